"""The ways to run an Openfabric app once, one module each: socket_io (our socket.io client), rest (POST
/execution) and sdk (openfabric_pysdk's Proxy). tools/openfabric/client.py chooses among them."""
from .base import Transport
from .rest import RestTransport
from .sdk import SdkTransport
from .socket_io import SocketIOTransport

__all__ = ["RestTransport", "SdkTransport", "SocketIOTransport", "Transport"]
