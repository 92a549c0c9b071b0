"""``python -m katapult_async.testing``: run the API simulator as a server process."""

from ._serve import main

raise SystemExit(main())
