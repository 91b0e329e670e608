"""Dead letters of the router (a topic) and the projector (a table): list, show, replay at most once."""
