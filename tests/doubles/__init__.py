"""Stand-ins for what this machine lacks (an NVIDIA GPU), following the real interfaces."""
