"""Booking persistence: SQLite (embedded default) and PostgreSQL backends."""

from booking.store.base import BookingStore, open_store

__all__ = ["BookingStore", "open_store"]
