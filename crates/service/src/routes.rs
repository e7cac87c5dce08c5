//! The whole HTTP surface on one screen. Each resource type is one line: `resource::<R>`.

use actix_web::web::{self, ServiceConfig};
use domain::{CarePlan, CareTeam, Resource, Task};

use crate::interactions::{self as i, method_not_allowed, unknown_type};
use crate::{capabilities, health, search};

/// Register every route under the FHIR base `/fhir`.
pub(crate) fn configure(cfg: &mut ServiceConfig) {
    cfg.route("/livez", web::get().to(health::livez))
        .route("/readyz", web::get().to(health::readyz))
        .service(
            web::scope("/fhir")
                .service(
                    web::resource("/metadata").get(capabilities::metadata).default_service(web::to(method_not_allowed)),
                )
                .service(web::resource("/_history").get(i::history_system).default_service(web::to(method_not_allowed)))
                .configure(resource::<CarePlan>)
                .configure(resource::<CareTeam>)
                .configure(resource::<Task>)
                .default_service(web::to(unknown_type)),
        )
        .default_service(web::to(unknown_type));
}

/// The interactions of one resource type.
fn resource<R: Resource>(cfg: &mut ServiceConfig) {
    let base = format!("/{}", R::TYPE);
    let not_allowed = || web::to(method_not_allowed);
    cfg.service(
        web::resource(base.clone()).post(i::create::<R>).get(search::search_get::<R>).default_service(not_allowed()),
    )
    .service(web::resource(format!("{base}/_search")).post(search::search_post::<R>).default_service(not_allowed()))
    .service(web::resource(format!("{base}/_history")).get(i::history_type::<R>).default_service(not_allowed()))
    .service(
        web::resource(format!("{base}/{{id}}"))
            .get(i::read::<R>)
            .put(i::update::<R>)
            .delete(i::delete::<R>)
            .default_service(not_allowed()),
    )
    .service(
        web::resource(format!("{base}/{{id}}/_history")).get(i::history_instance::<R>).default_service(not_allowed()),
    )
    .service(
        web::resource(format!("{base}/{{id}}/_history/{{vid}}")).get(i::vread::<R>).default_service(not_allowed()),
    );
}
