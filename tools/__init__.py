"""Developer tools of the checkout (not installed with the package): ``python -m tools.mutation``."""
