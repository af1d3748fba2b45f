"""videopoll: moves AI-generated lesson videos from OpenHands + GitHub into Supabase Storage."""

__version__ = "0.1.0"
