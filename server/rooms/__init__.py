"""Sessions and their rooms: status, showcase, pins, sequenced events and history."""
