"""Insight's publishing library: what a Celery task, a script or the API imports to send UI
events to users' pages (`UIManager`). The edge that streams them to browsers is another
package (`edge`). Importing this one starts nothing, imports no web framework, and reads
only its own settings (`realtime.settings`).
"""

from realtime.broker.call import NotReplicated
from realtime.options import PublishOptions
from realtime.publisher import AsyncUIManager, Delivery, UIManager
from realtime.recipients import Recipient

__all__ = [
    "AsyncUIManager",
    "Delivery",
    "NotReplicated",
    "PublishOptions",
    "Recipient",
    "UIManager",
]
