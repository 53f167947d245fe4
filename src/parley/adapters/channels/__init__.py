"""Channel adapters behind one interface (`base.ChannelAdapter.send(message) -> ProviderReceipt`).

Every send carries the queue item's idempotency key through to the provider, so a worker that
crashes after sending and re-sends on recovery is deduplicated by any provider that honours it.
"""

from parley.adapters.channels.base import (
    ChannelAdapter,
    ChannelError,
    Message,
    ProviderReceipt,
    build_channels,
)

__all__ = ["ChannelAdapter", "ChannelError", "Message", "ProviderReceipt", "build_channels"]
