"""Insight's realtime subsystem: publish UI events from any process (`UIManager`) and stream
them to browsers (`realtime.main`, the edge). Importing this package starts nothing and does
not import FastAPI.
"""

from realtime.publisher import AsyncUIManager, UIManager
from realtime.recipients import Recipient

__all__ = ["AsyncUIManager", "Recipient", "UIManager"]
