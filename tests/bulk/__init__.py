"""The bulk engine's tests, one module per module of :mod:`katapult_async.bulk`."""
