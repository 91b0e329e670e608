"""The HTTP layer every HTTP service shares: one error shape, JSON answers, lifespans, and the edge that
authenticates each request once (`services.http.edge`)."""
