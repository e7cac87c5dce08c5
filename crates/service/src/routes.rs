//! The whole HTTP surface on one screen. Each resource type is one line: `resource::<R>()`.

use actix_web::web::{self, ServiceConfig};
use domain::{CarePlan, CareTeam, Goal, Provenance, Resource, Subscription, Task};

use crate::audit::trail;
use crate::auth::discovery;
use crate::interactions::{self as i, method_not_allowed, unknown_type};
use crate::subscriptions::operations as subscription;
use crate::{capabilities, docs, health, metrics, openapi, plan_summary, search, transaction};

/// Register the operational routes and every route under the FHIR base `/fhir`.
pub(crate) fn configure(cfg: &mut ServiceConfig) {
    cfg.route("/livez", web::get().to(health::livez))
        .route("/readyz", web::get().to(health::readyz))
        .route("/metrics", web::get().to(metrics::serve))
        .route("/openapi.json", web::get().to(openapi::serve))
        .route("/docs", web::get().to(docs::redirect))
        .service(web::scope("/docs").route("/{file:[^/]*}", web::get().to(docs::asset)))
        .route("/.well-known/smart-configuration", web::get().to(discovery::well_known))
        .service(
            web::scope("/fhir")
                .service(web::resource("").post(transaction::bundle).default_service(web::to(method_not_allowed)))
                .service(web::resource("/").post(transaction::bundle).default_service(web::to(method_not_allowed)))
                .service(
                    web::resource("/metadata").get(capabilities::metadata).default_service(web::to(method_not_allowed)),
                )
                .service(web::resource("/_history").get(i::history_system).default_service(web::to(method_not_allowed)))
                .service(
                    web::resource("/.well-known/smart-configuration")
                        .get(discovery::well_known)
                        .default_service(web::to(method_not_allowed)),
                )
                .service(
                    web::scope("/AuditEvent")
                        .service(operation("", web::get().to(trail::search)))
                        .service(operation("/{id}", web::get().to(trail::read))),
                )
                .service(
                    web::scope("/SearchParameter")
                        .service(operation("/{id}", web::get().to(capabilities::search_parameter))),
                )
                .service(
                    resource::<CarePlan>().service(operation("/{id}/$summary", web::get().to(plan_summary::summary))),
                )
                .service(resource::<CareTeam>())
                .service(resource::<Goal>())
                .service(resource::<Task>())
                .service(resource::<Provenance>())
                .service(
                    resource::<Subscription>()
                        .service(operation("/{id}/$status", web::get().to(subscription::status)))
                        .service(operation("/{id}/$events", web::get().to(subscription::events))),
                )
                .service(
                    web::scope("/SubscriptionTopic")
                        .service(operation("", web::get().to(subscription::topics)))
                        .service(operation("/{id}", web::get().to(subscription::topic))),
                )
                .default_service(web::to(unknown_type)),
        )
        .default_service(web::to(unknown_type));
}

/// One operation or read-only path: `route`, and 405 for any other method.
fn operation(path: &str, route: actix_web::Route) -> actix_web::Resource {
    web::resource(path).route(route).default_service(web::to(method_not_allowed))
}

/// The interactions of one resource type, in a scope of its own: a path is matched against
/// its type's routes only (actix matches each `{id}` pattern with a regex, two passes per
/// request), and the type's operations join the scope.
fn resource<R: Resource>() -> actix_web::Scope {
    let not_allowed = || web::to(method_not_allowed);
    web::scope(&format!("/{}", R::TYPE))
        .service(
            web::resource("")
                .post(i::create::<R>)
                .get(search::search_get::<R>)
                .put(i::update_conditional::<R>)
                .patch(i::patch_conditional::<R>)
                .delete(i::delete_conditional::<R>)
                .default_service(not_allowed()),
        )
        .service(operation("/_search", web::post().to(search::search_post::<R>)))
        .service(operation("/_history", web::get().to(i::history_type::<R>)))
        .service(
            web::resource("/{id}")
                .get(i::read::<R>)
                .put(i::update::<R>)
                .patch(i::patch::<R>)
                .delete(i::delete::<R>)
                .default_service(not_allowed()),
        )
        .service(operation("/{id}/_history", web::get().to(i::history_instance::<R>)))
        .service(operation("/{id}/_history/{vid}", web::get().to(i::vread::<R>)))
}
