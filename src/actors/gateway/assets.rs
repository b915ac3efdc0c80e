//! The dashboard's files, compiled into the binary (it works offline and needs no CDN): the
//! page, its script and style, and the vendored uPlot (`static/vendor/`, MIT, see its README).

use super::auth::error;
use super::legacy::{accepts_gzip, gzip};
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use std::sync::OnceLock;

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    /// Vendored files never change within a build: browsers may keep them.
    immutable: bool,
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("static/index.html"),
        immutable: false,
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("static/app.js"),
        immutable: false,
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("static/app.css"),
        immutable: false,
    },
    Asset {
        name: "uPlot.iife.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("static/vendor/uPlot.iife.min.js"),
        immutable: true,
    },
    Asset {
        name: "uPlot.min.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("static/vendor/uPlot.min.css"),
        immutable: true,
    },
    Asset {
        name: "LICENSE-uPlot",
        content_type: "text/plain; charset=utf-8",
        body: include_bytes!("static/vendor/LICENSE-uPlot"),
        immutable: true,
    },
];

/// Gzipped bodies, made on first request.
static GZIPPED: OnceLock<Vec<Bytes>> = OnceLock::new();

fn serve(request: &HttpRequest, index: usize) -> HttpResponse {
    let asset = &ASSETS[index];
    let mut response = HttpResponse::Ok();
    response.content_type(asset.content_type).insert_header((
        header::CACHE_CONTROL,
        if asset.immutable {
            "public, max-age=86400"
        } else {
            "no-cache"
        },
    ));
    response.insert_header((header::VARY, "Accept-Encoding"));
    if accepts_gzip(request) {
        let gzipped = GZIPPED.get_or_init(|| ASSETS.iter().map(|asset| gzip(asset.body)).collect());
        response
            .insert_header((header::CONTENT_ENCODING, "gzip"))
            .body(gzipped[index].clone())
    } else {
        response.body(Bytes::from_static(asset.body))
    }
}

/// `GET /`: the dashboard page.
pub async fn index(request: HttpRequest) -> HttpResponse {
    serve(&request, 0)
}

/// `GET /assets/{file}`.
pub async fn file(request: HttpRequest, path: web::Path<String>) -> HttpResponse {
    let name = path.into_inner();
    match ASSETS.iter().position(|asset| asset.name == name) {
        Some(index) => serve(&request, index),
        None => error(StatusCode::NOT_FOUND, format!("no dashboard file `{name}`")),
    }
}
