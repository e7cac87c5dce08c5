// Swagger UI for this server's own OpenAPI description (../openapi.json, relative so that it
// also works behind a path prefix). Nothing is fetched from anywhere else: validatorUrl: null
// turns off the badge that would ask validator.swagger.io about the document.
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "../openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    docExpansion: "none",
    defaultModelsExpandDepth: 0,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
