// Starts Swagger UI on this service's own OpenAPI document. validatorUrl is null so the page
// never calls the public swagger.io validator: the docs work offline and leak nothing.
window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "./docs.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    layout: "BaseLayout",
  });
};
