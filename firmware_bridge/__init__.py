"""Everything that speaks to device firmware, sans-I/O: bytes or payloads in, readings out."""
