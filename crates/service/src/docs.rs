//! `/docs`: Swagger UI over `/openapi.json`, served from files compiled into the binary so it
//! works offline (swagger-ui-dist, vendored unmodified under `assets/swagger-ui/`).

use std::sync::LazyLock;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::error::ApiError;

/// One file of the UI.
struct Asset {
    name: &'static str,
    body: &'static [u8],
    content_type: &'static str,
    cache_control: &'static str,
}

/// The page and its initializer are revalidated on every load, so a new build shows its own
/// description; the library is kept for a day, then revalidated by its ETag.
const ASSETS: [Asset; 4] = [
    Asset {
        name: "index.html",
        body: include_bytes!("../assets/swagger-ui/index.html"),
        content_type: "text/html; charset=utf-8",
        cache_control: "no-cache",
    },
    Asset {
        name: "swagger-initializer.js",
        body: include_bytes!("../assets/swagger-ui/swagger-initializer.js"),
        content_type: "text/javascript; charset=utf-8",
        cache_control: "no-cache",
    },
    Asset {
        name: "swagger-ui-bundle.js",
        body: include_bytes!("../assets/swagger-ui/swagger-ui-bundle.js"),
        content_type: "text/javascript; charset=utf-8",
        cache_control: "public, max-age=86400",
    },
    Asset {
        name: "swagger-ui.css",
        body: include_bytes!("../assets/swagger-ui/swagger-ui.css"),
        content_type: "text/css; charset=utf-8",
        cache_control: "public, max-age=86400",
    },
];

/// The page runs only the scripts served here and talks only to this server.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
     frame-ancestors 'none'; base-uri 'self'; form-action 'self'";

/// Strong ETags of the assets (FNV-1a of the bytes), computed once.
static ETAGS: LazyLock<Vec<String>> =
    LazyLock::new(|| ASSETS.iter().map(|asset| format!("\"{:016x}\"", fnv1a(asset.body))).collect());

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3))
}

/// `GET /docs`: on to `/docs/`, under which the page's relative links resolve.
pub(crate) async fn redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect().insert_header((header::LOCATION, "docs/")).finish()
}

/// `GET /docs/{file}`; the empty name is the page.
pub(crate) async fn asset(req: HttpRequest, file: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let name = if file.is_empty() { "index.html" } else { file.as_str() };
    let Some(index) = ASSETS.iter().position(|asset| asset.name == name) else {
        return Err(ApiError::NotFound(format!("The path {}", req.path())));
    };
    let (asset, etag) = (&ASSETS[index], &ETAGS[index]);
    let unchanged = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag));
    let mut response = if unchanged { HttpResponse::NotModified() } else { HttpResponse::Ok() };
    response
        .insert_header((header::ETAG, etag.as_str()))
        .insert_header((header::CACHE_CONTROL, asset.cache_control))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
    if asset.name == "index.html" {
        response.insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY));
    }
    if unchanged {
        return Ok(response.finish());
    }
    Ok(response.content_type(asset.content_type).body(asset.body))
}
