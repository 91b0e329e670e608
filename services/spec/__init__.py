"""The API's specs: OpenAPI 3.1 from the routes (`openapi`), AsyncAPI 3.0 from the event classes
(`asyncapi`), the body types both share with the client (`wire`, `frames`), and the part serving them."""
