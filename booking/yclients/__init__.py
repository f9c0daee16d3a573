"""YCLIENTS / Altegio: the salon CRM most Russian salons keep their schedule in.

`wire` (pure request/response codecs), `client` (HTTP with the rate limit), `catalog`
(matching the CRM's services and staff to the config catalog), `backend` (the
`BookingBackend`), `emulator` (a local test double speaking the same API).
"""
