"""Catalogue and buying: products and stock (carts, checkout and deals build on this)."""
