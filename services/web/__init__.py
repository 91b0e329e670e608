"""The page a person uses: submit an order and watch its lifecycle live (plain HTML and JS, no build step)."""
