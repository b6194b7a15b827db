//! The OpenAPI 3.1 document: the base (title, security scheme) here; paths come from the handlers' `#[utoipa::path]`
//! attributes, collected with the routes themselves (see [`crate::api`]).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "ICE", description = "Governed execution for AI agents: proposals are decided, permits executed, \
        everything recorded in a hash-chained ledger. Every request authenticates with `Authorization: Bearer <token>`; \
        errors are `{code, message, hint}` with stable `ICE-Exxxx` codes."),
    modifiers(&Bearer),
    components(schemas(crate::error::ErrorBody))
)]
struct Base;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("ice token").build()),
        );
    }
}

/// The base document the routes are added to.
pub fn base() -> utoipa::openapi::OpenApi {
    Base::openapi()
}

/// The full document as served at `/v1/openapi.json` (without a running server: `ice serve --openapi`).
pub fn openapi_json() -> String {
    crate::api::document().to_pretty_json().unwrap_or_else(|_| "{}".into())
}
