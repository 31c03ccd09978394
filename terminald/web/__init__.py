"""The status page for counter staff: one HTML shell and its local assets (no CDN)."""
