"""Where bookings live: the local store (SQLite/PostgreSQL) or the salon's CRM
(YCLIENTS/Altegio), behind one `BookingBackend` protocol (`booking.backend` in config)."""

from booking.backends.base import (
    BackendConfigError,
    BackendUnavailable,
    BookingBackend,
    InvalidPhone,
)

__all__ = ["BackendConfigError", "BackendUnavailable", "BookingBackend", "InvalidPhone"]
