"""Tests of the public API simulator, ``katapult_async.testing``, one module per part."""
