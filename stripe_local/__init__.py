"""A local Stripe-compatible server for development and tests; see `stripe_local.app`."""
