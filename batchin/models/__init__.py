"""Model runners behind small interfaces, and the catalog that picks them. Engines import lazily."""
