"""``rnncap serve``: a captioning web page and JSON API over the same Captioner the command line uses.

:mod:`rnncap.serve.app` the Starlette app and its routes, :mod:`rnncap.serve.batching` the micro-batcher,
:mod:`rnncap.serve.uploads` reading uploads within limits, :mod:`rnncap.serve.models` the models offered,
:mod:`rnncap.serve.server` uvicorn and the host check; ``static/`` the page (no build step, nothing from a CDN).
"""

from rnncap.serve.app import ServeSettings, create_app
from rnncap.serve.models import ServedModels, load_served_models

__all__ = ["ServeSettings", "ServedModels", "create_app", "load_served_models"]
