//! SMART on FHIR authorization, patient compartments, the audit trail and hardening, driven
//! over HTTP against the real server with keys generated here and a local JWKS endpoint.

use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use reqwest::{Method, Response};
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};
use service::config::{AuthSettings, RateLimit};

use crate::helpers::{eventually, header, spawn_with, TestApp};

const ISSUER: &str = "https://idp.example.org";
const AUDIENCE: &str = "https://careplan.example.org/fhir";

/// Keys made once per test binary (RSA generation is slow).
struct Keys {
    ec_private: String,
    ec_public: String,
    ec_x: String,
    ec_y: String,
    rsa_private: String,
    rsa_public: String,
    rsa_n: String,
    rsa_e: String,
    /// A P-384 key (ES384), published as `ec384-1`.
    ec384_private: String,
    ec384_x: String,
    ec384_y: String,
    /// A second EC key the server has never been told about.
    rogue_private: String,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

static KEYS: LazyLock<Keys> = LazyLock::new(|| {
    let mut rng = rsa::rand_core::OsRng;
    let ec = p256::SecretKey::random(&mut rng);
    let point = ec.public_key().to_encoded_point(false);
    let rogue = p256::SecretKey::random(&mut rng);
    let ec384 = p384::SecretKey::random(&mut rng);
    let point384 = ec384.public_key().to_encoded_point(false);
    let rsa = rsa::RsaPrivateKey::new(&mut rng, 2048).expect("RSA key");
    let rsa_public = rsa::RsaPublicKey::from(&rsa);
    Keys {
        ec_private: ec.to_pkcs8_pem(LineEnding::LF).expect("pem").to_string(),
        ec_public: ec.public_key().to_public_key_pem(LineEnding::LF).expect("pem"),
        ec_x: b64(point.x().expect("x")),
        ec_y: b64(point.y().expect("y")),
        rsa_private: rsa.to_pkcs8_pem(LineEnding::LF).expect("pem").to_string(),
        rsa_public: rsa_public.to_public_key_pem(LineEnding::LF).expect("pem"),
        rsa_n: b64(&rsa_public.n().to_bytes_be()),
        rsa_e: b64(&rsa_public.e().to_bytes_be()),
        ec384_private: ec384.to_pkcs8_pem(LineEnding::LF).expect("pem").to_string(),
        ec384_x: b64(point384.x().expect("x")),
        ec384_y: b64(point384.y().expect("y")),
        rogue_private: rogue.to_pkcs8_pem(LineEnding::LF).expect("pem").to_string(),
    }
});

/// The JWKS document publishing the P-256 key as `ec-1`, the RSA key as `rsa-1` and the P-384 key as `ec384-1`.
fn jwks_document() -> Value {
    let k = &*KEYS;
    json!({ "keys": [
        { "kty": "EC", "crv": "P-256", "x": k.ec_x, "y": k.ec_y, "kid": "ec-1", "use": "sig", "alg": "ES256" },
        { "kty": "RSA", "n": k.rsa_n, "e": k.rsa_e, "kid": "rsa-1", "use": "sig" },
        { "kty": "EC", "crv": "P-384", "x": k.ec384_x, "y": k.ec384_y, "kid": "ec384-1", "use": "sig", "alg": "ES384" },
    ]})
}

/// A local JWKS endpoint whose document can be changed or taken down.
struct JwksServer {
    url: String,
    document: Arc<Mutex<Option<Value>>>,
    hits: Arc<AtomicUsize>,
}

impl JwksServer {
    async fn start(document: Option<Value>) -> Self {
        let document = Arc::new(Mutex::new(document));
        let hits = Arc::new(AtomicUsize::new(0));
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        let (served, counted) = (document.clone(), hits.clone());
        let server = actix_web::HttpServer::new(move || {
            let (served, counted) = (served.clone(), counted.clone());
            actix_web::App::new().route(
                "/jwks",
                actix_web::web::get().to(move || {
                    let (served, counted) = (served.clone(), counted.clone());
                    async move {
                        counted.fetch_add(1, Ordering::SeqCst);
                        match served.lock().expect("lock").clone() {
                            Some(doc) => actix_web::HttpResponse::Ok().json(doc),
                            None => actix_web::HttpResponse::ServiceUnavailable().finish(),
                        }
                    }
                }),
            )
        })
        .workers(1)
        .listen(listener)
        .expect("listen")
        .run();
        tokio::spawn(server);
        Self { url: format!("http://127.0.0.1:{port}/jwks"), document, hits }
    }

    fn set(&self, document: Option<Value>) {
        *self.document.lock().expect("lock") = document;
    }
}

fn auth_settings(jwks_url: Option<String>) -> AuthSettings {
    AuthSettings {
        disabled: false,
        issuer: Some(ISSUER.into()),
        audience: Some(AUDIENCE.into()),
        jwks_url,
        jwks_min_refresh: Duration::ZERO,
        authorize_url: Some("https://idp.example.org/authorize".into()),
        token_url: Some("https://idp.example.org/token".into()),
        ..AuthSettings::disabled()
    }
}

/// A server with authorization on, trusting the local JWKS.
async fn secure_app() -> (TestApp, JwksServer) {
    let jwks = JwksServer::start(Some(jwks_document())).await;
    let url = jwks.url.clone();
    let app = spawn_with(move |s| s.auth = auth_settings(Some(url))).await;
    (app, jwks)
}

fn now() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()).expect("seconds")
}

/// Claims for `scope`, valid for five minutes; `patient` adds the launch context.
fn claims(scope: &str, patient: Option<&str>) -> Value {
    let mut claims = json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "client_id": "ehr-app",
        "fhirUser": "Practitioner/nurse-lee",
        "iat": now(), "nbf": now() - 10, "exp": now() + 300, "scope": scope,
    });
    if let Some(patient) = patient {
        claims["patient"] = json!(patient);
    }
    claims
}

fn sign(claims: &Value, alg: Algorithm, kid: Option<&str>) -> String {
    let k = &*KEYS;
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(k.ec_private.as_bytes()),
        Algorithm::ES384 => EncodingKey::from_ec_pem(k.ec384_private.as_bytes()),
        _ => EncodingKey::from_rsa_pem(k.rsa_private.as_bytes()),
    }
    .expect("signing key");
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &key).expect("signed")
}

/// An ES256 token with `scope` (and a patient context).
fn token(scope: &str, patient: Option<&str>) -> String {
    sign(&claims(scope, patient), Algorithm::ES256, Some("ec-1"))
}

async fn call(app: &TestApp, method: Method, path: &str, token: Option<&str>, body: Option<&Value>) -> Response {
    let mut request = app.request(method, path);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.header("content-type", "application/fhir+json").body(body.to_string());
    }
    request.send().await.expect("the request reaches the server")
}

async fn get(app: &TestApp, path: &str, token: &str) -> Response {
    call(app, Method::GET, path, Some(token), None).await
}

async fn json_of(response: Response) -> Value {
    response.json().await.expect("JSON body")
}

fn plan(id: &str, patient: &str) -> Value {
    json!({ "resourceType": "CarePlan", "id": id, "status": "active", "intent": "plan",
            "subject": { "reference": format!("Patient/{patient}") }, "title": "Shared care plan" })
}

fn team(id: &str, patient: &str) -> Value {
    json!({ "resourceType": "CareTeam", "id": id, "status": "active",
            "subject": { "reference": format!("Patient/{patient}") } })
}

fn task(id: &str, patient: &str, status: &str, plan: &str) -> Value {
    json!({ "resourceType": "Task", "id": id, "status": status, "intent": "order",
            "basedOn": [{ "reference": format!("CarePlan/{plan}") }],
            "for": { "reference": format!("Patient/{patient}") } })
}

/// Seed two patients' data with an all-powerful system token: p1 has plan-1 (whose care team
/// is p2's team-2, a cross-patient link), team-1 and task-1; p2 has plan-2, team-2, and task-2
/// which is based on p1's plan-1.
async fn seed(app: &TestApp) {
    let admin = token("system/*.cruds", None);
    let mut plan1 = plan("plan-1", "p1");
    plan1["careTeam"] = json!([{ "reference": "CareTeam/team-2" }, { "reference": "CareTeam/team-1" }]);
    for (path, body) in [
        ("CareTeam/team-1", team("team-1", "p1")),
        ("CareTeam/team-2", team("team-2", "p2")),
        ("CarePlan/plan-1", plan1),
        ("CarePlan/plan-2", plan("plan-2", "p2")),
        ("Task/task-1", task("task-1", "p1", "requested", "plan-1")),
        ("Task/task-2", task("task-2", "p2", "requested", "plan-1")),
        ("Task/task-3", task("task-3", "p1", "accepted", "plan-1")),
    ] {
        let response = call(app, Method::PUT, path, Some(&admin), Some(&body)).await;
        assert_eq!(response.status(), 201, "seed {path}");
    }
}

fn ids(bundle: &Value) -> Vec<String> {
    let mut ids: Vec<String> = bundle["entry"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .filter_map(|e| {
                    Some(format!("{}/{}", e["resource"]["resourceType"].as_str()?, e["resource"]["id"].as_str()?))
                })
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids.dedup();
    ids
}

fn challenge(response: &Response) -> String {
    header(response, "www-authenticate")
}

#[tokio::test]
async fn requests_without_a_token_are_refused_with_a_bearer_challenge_but_discovery_is_open() {
    let (app, _jwks) = secure_app().await;

    let refused = app.get("CarePlan").await;
    let metadata = app.get("metadata").await;
    let smart = app.get(".well-known/smart-configuration").await;
    let root = app.base.trim_end_matches("/fhir").to_owned();
    let root_smart = app.client.get(format!("{root}/.well-known/smart-configuration")).send().await.expect("sent");

    assert_eq!(refused.status(), 401);
    assert_eq!(challenge(&refused), "Bearer realm=\"careplan\"");
    let outcome = json_of(refused).await;
    assert_eq!(outcome["issue"][0]["code"], "login");
    assert_eq!(metadata.status(), 200);
    let statement = json_of(metadata).await;
    let security = &statement["rest"][0]["security"];
    assert_eq!(security["service"][0]["coding"][0]["code"], "SMART-on-FHIR");
    assert_eq!(security["extension"][0]["extension"][0]["valueUri"], "https://idp.example.org/authorize");
    for response in [smart, root_smart] {
        assert_eq!(response.status(), 200);
        let document = json_of(response).await;
        assert_eq!(document["issuer"], ISSUER);
        assert_eq!(document["token_endpoint"], "https://idp.example.org/token");
        assert!(document["capabilities"].as_array().expect("list").iter().any(|c| c == "permission-v2"));
    }
}

#[tokio::test]
async fn a_valid_token_of_every_scope_shape_is_accepted() {
    let (app, _jwks) = secure_app().await;
    seed(&app).await;
    let rs256 = |scope: &str, patient: Option<&str>| sign(&claims(scope, patient), Algorithm::RS256, Some("rsa-1"));
    let rs384 = |scope: &str| sign(&claims(scope, None), Algorithm::RS384, Some("rsa-1"));

    for (what, token) in [
        ("v2 patient (ES256)", token("patient/CarePlan.rs", Some("p1"))),
        ("v2 user (RS256)", rs256("user/CarePlan.rs", None)),
        ("v2 system (RS384)", rs384("system/*.rs")),
        ("v2 user (ES384)", sign(&claims("user/*.rs", None), Algorithm::ES384, Some("ec384-1"))),
        ("v1 patient", rs256("patient/*.read", Some("p1"))),
        ("v1 user", token("user/CarePlan.read", None)),
        ("v1 system wildcard", token("system/*.*", None)),
        ("scp array instead of scope", {
            let mut c = claims("", None);
            c.as_object_mut().expect("object").remove("scope");
            c["scp"] = json!(["openid", "user/CarePlan.rs"]);
            sign(&c, Algorithm::ES256, Some("ec-1"))
        }),
    ] {
        let read = get(&app, "CarePlan/plan-1", &token).await;
        let search = get(&app, "CarePlan?_count=10", &token).await;
        assert_eq!(read.status(), 200, "{what}: read");
        assert_eq!(search.status(), 200, "{what}: search");
    }
}

#[tokio::test]
async fn expired_premature_foreign_tampered_unsigned_and_confused_tokens_are_refused() {
    let (app, _jwks) = secure_app().await;
    let good = claims("user/*.rs", None);
    let with = |key: &str, value: Value| {
        let mut c = good.clone();
        c[key] = value;
        sign(&c, Algorithm::ES256, Some("ec-1"))
    };
    let valid = token("user/*.rs", None);
    let (head, rest) = valid.split_once('.').expect("three parts");
    let (payload, signature) = rest.split_once('.').expect("three parts");
    let tampered_signature = {
        let mut bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(signature).expect("b64");
        bytes[10] ^= 0x55;
        format!("{head}.{payload}.{}", b64(&bytes))
    };
    let tampered_payload = {
        let mut c = good.clone();
        c["scope"] = json!("system/*.cruds");
        format!("{head}.{}.{signature}", b64(c.to_string().as_bytes()))
    };
    let unsigned =
        format!("{}.{}.", b64(br#"{"alg":"none","typ":"JWT","kid":"ec-1"}"#), b64(good.to_string().as_bytes()));
    // HMAC confusion: HS256 keyed with the bytes of the server's own public key.
    let hmac_with_public_key = {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("rsa-1".into());
        jsonwebtoken::encode(&header, &good, &EncodingKey::from_secret(KEYS.rsa_public.as_bytes())).expect("signed")
    };
    let hmac_with_ec_key = {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("ec-1".into());
        jsonwebtoken::encode(&header, &good, &EncodingKey::from_secret(KEYS.ec_public.as_bytes())).expect("signed")
    };
    let rogue = {
        let key = EncodingKey::from_ec_pem(KEYS.rogue_private.as_bytes()).expect("key");
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("ec-1".into());
        jsonwebtoken::encode(&header, &good, &key).expect("signed")
    };
    let unknown_kid = sign(&good, Algorithm::ES256, Some("nobody"));
    let rs_token_with_ec_kid = sign(&good, Algorithm::RS256, Some("ec-1"));

    for (what, token) in [
        ("expired", with("exp", json!(now() - 600))),
        ("not yet valid", with("nbf", json!(now() + 600))),
        ("wrong issuer", with("iss", json!("https://evil.example"))),
        ("wrong audience", with("aud", json!("https://other.example/fhir"))),
        ("no audience", {
            let mut c = good.clone();
            c.as_object_mut().expect("object").remove("aud");
            sign(&c, Algorithm::ES256, Some("ec-1"))
        }),
        ("tampered signature", tampered_signature),
        ("tampered payload", tampered_payload),
        ("alg none", unsigned),
        ("HS256 keyed with the RSA public key", hmac_with_public_key),
        ("HS256 keyed with the EC public key", hmac_with_ec_key),
        ("signed by a key the server does not trust", rogue),
        ("unknown kid", unknown_kid),
        ("RS256 under an EC key id", rs_token_with_ec_kid),
        ("not a JWT", "not-a-token".to_owned()),
    ] {
        let response = get(&app, "CarePlan", &token).await;
        assert_eq!(response.status(), 401, "{what}");
        assert!(challenge(&response).contains("error=\"invalid_token\""), "{what}: {}", challenge(&response));
        assert_eq!(json_of(response).await["issue"][0]["code"], "login", "{what}");
    }
    let basic = app.request(Method::GET, "CarePlan").header("authorization", "Basic dXNlcjpwYXNz").send().await;
    assert_eq!(basic.expect("sent").status(), 401, "Basic credentials");
}

#[tokio::test]
async fn a_failing_jwks_endpoint_refuses_unknown_keys_and_the_service_keeps_serving() {
    // Started while the JWKS endpoint is down: nothing validates, nothing crashes.
    let jwks = JwksServer::start(None).await;
    let url = jwks.url.clone();
    let app = spawn_with(move |s| s.auth = auth_settings(Some(url))).await;
    let valid = token("user/*.rs", None);

    let while_down = get(&app, "CarePlan", &valid).await;
    let live = app.client.get(app.base.replace("/fhir", "/livez")).send().await.expect("sent");

    assert_eq!(while_down.status(), 401);
    assert_eq!(live.status(), 200);

    // Back up: the unknown kid triggers a fetch and the token is accepted.
    jwks.set(Some(jwks_document()));
    assert_eq!(get(&app, "CarePlan", &valid).await.status(), 200);

    // Down again: known keys keep working, unknown ones are 401, never 500.
    jwks.set(None);
    let rotated = sign(&claims("user/*.rs", None), Algorithm::ES256, Some("ec-2"));
    assert_eq!(get(&app, "CarePlan", &token("user/*.rs", Some("x"))).await.status(), 200);
    assert_eq!(get(&app, "CarePlan", &rotated).await.status(), 401);
    assert!(jwks.hits.load(Ordering::SeqCst) >= 3, "an unknown kid makes the server look again");
}

#[tokio::test]
async fn unknown_kids_refetch_the_jwks_no_more_often_than_the_minimum_interval() {
    let jwks = JwksServer::start(Some(jwks_document())).await;
    let url = jwks.url.clone();
    let app = spawn_with(move |s| {
        s.auth = AuthSettings { jwks_min_refresh: Duration::from_secs(3600), ..auth_settings(Some(url)) }
    })
    .await;
    let before = jwks.hits.load(Ordering::SeqCst);

    for n in 0..5 {
        let unknown = sign(&claims("user/*.rs", None), Algorithm::ES256, Some(&format!("k{n}")));
        assert_eq!(get(&app, "CarePlan", &unknown).await.status(), 401);
    }

    assert!(jwks.hits.load(Ordering::SeqCst) - before <= 1, "at most one fetch within the interval");
}

#[tokio::test]
async fn public_keys_from_pem_files_verify_tokens() {
    let dir = tempfile::tempdir().expect("directory");
    let (ec, rsa) = (dir.path().join("ec.pem"), dir.path().join("rsa.pem"));
    std::fs::write(&ec, &KEYS.ec_public).expect("written");
    std::fs::write(&rsa, &KEYS.rsa_public).expect("written");
    let app = spawn_with(move |s| {
        s.auth = AuthSettings { public_key_files: vec![ec, rsa], ..auth_settings(None) };
    })
    .await;

    let es = token("user/*.rs", None);
    let rs = sign(&claims("user/*.rs", None), Algorithm::RS256, None);
    let hmac = {
        let header = Header::new(Algorithm::HS256);
        jsonwebtoken::encode(&header, &claims("user/*.rs", None), &EncodingKey::from_secret(KEYS.rsa_public.as_bytes()))
            .expect("signed")
    };

    assert_eq!(get(&app, "CarePlan", &es).await.status(), 200);
    assert_eq!(get(&app, "CarePlan", &rs).await.status(), 200);
    assert_eq!(get(&app, "CarePlan", &hmac).await.status(), 401);
}

#[tokio::test]
async fn a_scope_too_narrow_for_the_interaction_is_forbidden() {
    let (app, _jwks) = secure_app().await;
    seed(&app).await;
    let patch = json!([{ "op": "replace", "path": "/status", "value": "accepted" }]);
    let update = task("task-1", "p1", "requested", "plan-1");
    let new_task = task("task-9", "p1", "requested", "plan-1");
    // (scope, method, path, body, expected status)
    let cases: Vec<(&str, Method, &str, Option<Value>, u16)> = vec![
        ("user/Task.s", Method::GET, "Task/task-1", None, 403),
        ("user/Task.s", Method::GET, "Task/task-1/_history/1", None, 403),
        ("user/Task.s", Method::GET, "Task/task-1/_history", None, 403),
        ("user/Task.s", Method::GET, "Task/_history", None, 403),
        ("user/Task.s", Method::GET, "Task?status=requested", None, 200),
        ("user/Task.r", Method::GET, "Task?status=requested", None, 403),
        ("user/Task.r", Method::GET, "Task/task-1", None, 200),
        ("user/Task.r", Method::GET, "Task/task-1/_history", None, 200),
        ("user/Task.rs", Method::POST, "Task", Some(new_task.clone()), 403),
        ("user/Task.rs", Method::PUT, "Task/task-1", Some(update.clone()), 403),
        ("user/Task.rs", Method::PATCH, "Task/task-1", Some(patch.clone()), 403),
        ("user/Task.rs", Method::DELETE, "Task/task-1", None, 403),
        ("user/Task.c", Method::POST, "Task", Some(new_task.clone()), 201),
        ("user/Task.u", Method::PUT, "Task/task-1", Some(update.clone()), 200),
        ("user/Task.u", Method::PUT, "Task/task-8", Some(task("task-8", "p1", "requested", "plan-1")), 403),
        ("user/Task.u", Method::PATCH, "Task/task-1", Some(patch.clone()), 200),
        ("user/Task.d", Method::DELETE, "Task/task-3", None, 204),
        ("user/CarePlan.cruds", Method::GET, "Task/task-1", None, 403),
        ("user/Task.write", Method::GET, "Task/task-1", None, 403),
        ("openid fhirUser", Method::GET, "Task/task-1", None, 403),
        ("user/Task.c", Method::PUT, "Task/task-7", Some(task("task-7", "p1", "requested", "plan-1")), 403),
        ("user/Task.cu", Method::PUT, "Task/task-7", Some(task("task-7", "p1", "requested", "plan-1")), 201),
        ("user/CarePlan.s", Method::GET, "CarePlan/plan-1/$summary", None, 403),
        ("user/CarePlan.r", Method::GET, "CarePlan/plan-1/$summary", None, 200),
        ("user/Task.rs", Method::GET, "AuditEvent", None, 403),
        ("user/Task.rs", Method::GET, "_history", None, 200),
        ("user/Observation.rs", Method::GET, "_history", None, 403),
    ];
    for (scope, method, path, body, expected) in cases {
        let mut request = app.request(method.clone(), path).bearer_auth(token(scope, None));
        if let Some(body) = &body {
            let content_type =
                if method == Method::PATCH { "application/json-patch+json" } else { "application/fhir+json" };
            request = request.header("content-type", content_type).body(body.to_string());
        }
        let response = request.send().await.expect("sent");
        let status = response.status().as_u16();
        if expected == 403 {
            assert!(challenge(&response).contains("insufficient_scope"), "{scope} {method} {path}");
        }
        assert_eq!(status, expected, "{scope} {method} {path}: {}", response.text().await.unwrap_or_default());
    }
}

#[tokio::test]
async fn a_patient_token_searches_and_reads_only_its_patients_compartment() {
    let (app, _jwks) = secure_app().await;
    seed(&app).await;
    let p1 = token("patient/*.rs", Some("p1"));

    let tasks = json_of(get(&app, "Task", &p1).await).await;
    let by_other_patient = json_of(get(&app, "Task?patient=p2", &p1).await).await;
    let by_plan = json_of(get(&app, "Task?based-on=CarePlan/plan-1", &p1).await).await;
    let other_read = get(&app, "CarePlan/plan-2", &p1).await;
    let other_vread = get(&app, "CarePlan/plan-2/_history/1", &p1).await;
    let own_read = get(&app, "CarePlan/plan-1", &p1).await;
    let missing_claim = get(&app, "Task", &token("patient/*.rs", None)).await;

    assert_eq!(ids(&tasks), ["Task/task-1", "Task/task-3"]);
    assert_eq!(tasks["total"], 2, "the total counts only what may be seen");
    assert_eq!(ids(&by_other_patient), Vec::<String>::new());
    assert_eq!(ids(&by_plan), ["Task/task-1", "Task/task-3"], "task-2 is based on p1's plan but is p2's");
    assert_eq!(other_read.status(), 404);
    assert_eq!(other_vread.status(), 404);
    assert_eq!(own_read.status(), 200);
    assert_eq!(missing_claim.status(), 403, "patient/ scopes without a patient context grant nothing");
}

#[tokio::test]
async fn includes_and_revincludes_do_not_leak_other_patients_resources() {
    let (app, _jwks) = secure_app().await;
    seed(&app).await;
    let p1 = token("patient/*.rs", Some("p1"));

    let view = json_of(
        get(&app, "CarePlan?_include=CarePlan:care-team&_revinclude=Task:based-on&_include:iterate=*", &p1).await,
    )
    .await;
    let wildcard = json_of(get(&app, "CarePlan?_include=*&_revinclude=*", &p1).await).await;
    let admin = json_of(
        get(
            &app,
            "CarePlan?_id=plan-1&_include=CarePlan:care-team&_revinclude=Task:based-on",
            &token("system/*.rs", None),
        )
        .await,
    )
    .await;

    assert_eq!(ids(&view), ["CarePlan/plan-1", "CareTeam/team-1", "Task/task-1", "Task/task-3"]);
    assert_eq!(ids(&wildcard), ["CarePlan/plan-1", "CareTeam/team-1", "Task/task-1", "Task/task-3"]);
    assert!(ids(&admin).contains(&"Task/task-2".to_owned()), "without a compartment the anchors are all there");
    // Types the token may not read do not come along either.
    let plans_only = token("patient/CarePlan.rs", Some("p1"));
    let narrow =
        json_of(get(&app, "CarePlan?_revinclude=Task:based-on&_include=CarePlan:care-team", &plans_only).await).await;
    assert_eq!(ids(&narrow), ["CarePlan/plan-1"]);
}

#[tokio::test]
async fn history_shows_only_the_patients_versions() {
    let (app, _jwks) = secure_app().await;
    seed(&app).await;
    let admin = token("system/*.cruds", None);
    assert_eq!(call(&app, Method::DELETE, "Task/task-2", Some(&admin), None).await.status(), 204);
    assert_eq!(call(&app, Method::DELETE, "Task/task-3", Some(&admin), None).await.status(), 204);
    let p1 = token("patient/*.rs", Some("p1"));

    let system = json_of(get(&app, "_history", &p1).await).await;
    let tasks = json_of(get(&app, "Task/_history", &p1).await).await;
    let other = get(&app, "Task/task-2/_history", &p1).await;
    let own = json_of(get(&app, "Task/task-3/_history", &p1).await).await;
    let deleted_other = get(&app, "Task/task-2", &p1).await;

    let urls = |bundle: &Value| -> Vec<String> {
        bundle["entry"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| e["fullUrl"].as_str().unwrap_or("").rsplit("/fhir/").next().unwrap_or("").to_owned())
            .collect()
    };
    let mut system_urls = urls(&system);
    system_urls.sort();
    system_urls.dedup();
    assert_eq!(system_urls, ["CarePlan/plan-1", "CareTeam/team-1", "Task/task-1", "Task/task-3"]);
    assert_eq!(urls(&tasks).len(), 3, "task-1, task-3 and task-3's deletion");
    assert_eq!(other.status(), 404);
    assert_eq!(urls(&own).len(), 2);
    assert_eq!(deleted_other.status(), 404, "another patient's deletion is not revealed as 410");
}

#[tokio::test]
async fn writes_cannot_place_a_resource_in_or_take_one_from_another_patients_compartment() {
    let (app, _jwks) = secure_app().await;
    seed(&app).await;
    let p1 = token("patient/*.cruds", Some("p1"));
    let admin = token("system/*.rs", None);
    let json_patch = |value: &str| json!([{ "op": "replace", "path": "/subject/reference", "value": value }]);

    let create_other = call(&app, Method::POST, "CarePlan", Some(&p1), Some(&plan("x", "p2"))).await;
    let create_own = call(&app, Method::POST, "CarePlan", Some(&p1), Some(&plan("x", "p1"))).await;
    let move_own = call(&app, Method::PUT, "CarePlan/plan-1", Some(&p1), Some(&plan("plan-1", "p2"))).await;
    let take_other = call(&app, Method::PUT, "CarePlan/plan-2", Some(&p1), Some(&plan("plan-2", "p1"))).await;
    let patch_away = app
        .request(Method::PATCH, "CarePlan/plan-1")
        .bearer_auth(&p1)
        .header("content-type", "application/json-patch+json")
        .body(json_patch("Patient/p2").to_string())
        .send()
        .await
        .expect("sent");
    let delete_other = call(&app, Method::DELETE, "CarePlan/plan-2", Some(&p1), None).await;
    let conditional_other =
        call(&app, Method::PUT, "CareTeam?_id=team-2", Some(&p1), Some(&team("team-2", "p1"))).await;

    assert_eq!(create_other.status(), 403);
    assert_eq!(create_own.status(), 201);
    assert_eq!(move_own.status(), 403);
    assert_eq!(take_other.status(), 403);
    assert_eq!(patch_away.status(), 403);
    assert_eq!(delete_other.status(), 403);
    // The criteria are narrowed to p1's compartment, so p2's team-2 does not match; creating
    // under the body's id would overwrite it, and is refused as well.
    assert_eq!(conditional_other.status(), 403);
    let plan1 = json_of(get(&app, "CarePlan/plan-1", &admin).await).await;
    let plan2 = json_of(get(&app, "CarePlan/plan-2", &admin).await).await;
    let team2 = json_of(get(&app, "CareTeam/team-2", &admin).await).await;
    assert_eq!(plan1["subject"]["reference"], "Patient/p1");
    assert_eq!(plan1["meta"]["versionId"], "1", "refused writes leave nothing behind");
    assert_eq!(plan2["meta"]["versionId"], "1");
    assert_eq!(team2["subject"]["reference"], "Patient/p2");
}

#[tokio::test]
async fn transaction_and_batch_entries_are_checked_one_by_one() {
    let (app, _jwks) = secure_app().await;
    seed(&app).await;
    let p1 = token("patient/*.cruds", Some("p1"));
    let entry = |method: &str, url: &str, resource: Option<Value>| {
        let mut e = json!({ "request": { "method": method, "url": url } });
        if let Some(resource) = resource {
            e["resource"] = resource;
        }
        e
    };
    let entries = vec![
        entry("POST", "Task", Some(task("t-new", "p1", "requested", "plan-1"))),
        entry("PUT", "CarePlan/plan-2", Some(plan("plan-2", "p1"))),
        entry("GET", "CarePlan/plan-2", None),
        entry("GET", "CarePlan/plan-1", None),
    ];

    let transaction = call(
        &app,
        Method::POST,
        "",
        Some(&p1),
        Some(&json!({ "resourceType": "Bundle", "type": "transaction", "entry": entries })),
    )
    .await;
    let transaction_status = transaction.status();
    let transaction_body = json_of(transaction).await;
    let batch = json_of(
        call(
            &app,
            Method::POST,
            "",
            Some(&p1),
            Some(&json!({ "resourceType": "Bundle", "type": "batch", "entry": entries })),
        )
        .await,
    )
    .await;
    let only_tasks = token("patient/Task.cruds", Some("p1"));
    let wrong_type = call(&app, Method::POST, "", Some(&only_tasks), Some(&json!({ "resourceType": "Bundle", "type": "transaction",
        "entry": [entry("POST", "Task", Some(task("t-a", "p1", "requested", "plan-1"))), entry("POST", "CarePlan", Some(plan("x", "p1")))] }))).await;

    assert_eq!(transaction_status, 403, "{transaction_body}");
    assert!(transaction_body.to_string().contains("Bundle.entry[1]"), "the failing entry is named: {transaction_body}");
    let statuses: Vec<&str> = batch["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(statuses, ["201 Created", "403 Forbidden", "404 Not Found", "200 OK"]);
    assert_eq!(wrong_type.status(), 403);
    // Only the batch's allowed create stands; the transaction left nothing.
    let tasks = json_of(get(&app, "Task?_count=100", &token("system/*.rs", None)).await).await;
    assert_eq!(tasks["total"], 4, "three seeded tasks and the batch's one");
}

#[tokio::test]
async fn conditional_references_in_a_bundle_resolve_only_inside_the_tokens_compartment() {
    let (app, _jwks) = secure_app().await;
    seed(&app).await;
    let admin = token("system/*.cruds", None);
    for (id, patient) in [("team-other", "p2"), ("team-own", "p1")] {
        let mut body = team(id, patient);
        body["identifier"] = json!([{ "system": "urn:teams", "value": id }]);
        let put = call(&app, Method::PUT, &format!("CareTeam/{id}"), Some(&admin), Some(&body)).await;
        assert_eq!(put.status(), 201);
    }
    let p1 = token("patient/*.cruds", Some("p1"));
    let bundle_to = |team: &str| {
        let mut body = plan("ignored", "p1");
        body["careTeam"] = json!([{ "reference": format!("CareTeam?identifier=urn:teams|{team}") }]);
        json!({ "resourceType": "Bundle", "type": "transaction",
                "entry": [{ "resource": body, "request": { "method": "POST", "url": "CarePlan" } }] })
    };

    let other = call(&app, Method::POST, "", Some(&p1), Some(&bundle_to("team-other"))).await;
    let other_status = other.status();
    let other_body = json_of(other).await;
    let own = call(&app, Method::POST, "", Some(&p1), Some(&bundle_to("team-own"))).await;
    let own_status = own.status();
    let own_body = json_of(own).await;

    // p2's team is not there for p1's token: the same answer as for no team at all.
    assert_eq!(other_status, 404, "{other_body}");
    assert!(!other_body.to_string().contains("team-other\"/"), "{other_body}");
    assert_eq!(own_status, 200, "{own_body}");
    let location = own_body["entry"][0]["response"]["location"].as_str().expect("a location");
    let created = json_of(get(&app, location, &admin).await).await;
    assert_eq!(created["careTeam"][0]["reference"], "CareTeam/team-own");
    let plans = json_of(get(&app, "CarePlan?care-team=CareTeam/team-other", &admin).await).await;
    assert_eq!(plans["total"], 0, "nothing links p2's team: {plans}");
}

#[tokio::test]
async fn chains_and_has_cannot_test_other_patients_resources() {
    let (app, _jwks) = secure_app().await;
    seed(&app).await;
    let p1 = token("patient/*.rs", Some("p1"));
    let admin = token("system/*.rs", None);
    let searches = [
        // plan-1 (p1) lists p2's team-2 as a care team, and p2's task-2 is based on plan-1.
        ("CarePlan?care-team:CareTeam.subject=Patient/p2", false),
        ("CarePlan?_has:Task:based-on:patient=p2", false),
        ("Task?based-on:CarePlan._has:Task:based-on:patient=p2", false),
        // The same shapes through p1's own resources still match.
        ("CarePlan?care-team:CareTeam.subject=Patient/p1", true),
        ("CarePlan?_has:Task:based-on:status=requested", true),
    ];

    for (query, p1_finds_plan_1) in searches {
        let everyone = ids(&json_of(get(&app, query, &admin).await).await);
        let response = get(&app, query, &p1).await;
        assert_eq!(response.status(), 200, "{query}");
        let found = ids(&json_of(response).await);

        assert!(!everyone.is_empty(), "{query} matches something for an unrestricted token");
        let expected: Vec<String> = if p1_finds_plan_1 {
            everyone.iter().filter(|id| !id.ends_with("-2")).cloned().collect()
        } else {
            Vec::new()
        };
        assert_eq!(found, expected, "{query}");
    }
    let narrow = token("patient/CarePlan.rs", Some("p1"));
    let no_task_scope = get(&app, "CarePlan?_has:Task:based-on:status=requested", &narrow).await;
    assert_eq!(no_task_scope.status(), 403, "testing Tasks needs the scope to search them");
}

#[tokio::test]
async fn scope_constraints_narrow_access_to_matching_resources() {
    let (app, _jwks) = secure_app().await;
    seed(&app).await;
    let requested = token("patient/Task.rs?status=requested", Some("p1"));
    let either = token("patient/Task.rs?status=requested patient/Task.rs?status=accepted", Some("p1"));
    let unsupported = token("patient/Task.rs?owner=Practitioner/1", Some("p1"));

    assert_eq!(ids(&json_of(get(&app, "Task", &requested).await).await), ["Task/task-1"]);
    assert_eq!(get(&app, "Task/task-3", &requested).await.status(), 404);
    assert_eq!(ids(&json_of(get(&app, "Task", &either).await).await), ["Task/task-1", "Task/task-3"]);
    assert_eq!(get(&app, "Task", &unsupported).await.status(), 403, "unsupported constraints grant nothing");
}

/// The audit records matching `query`, once there are `at_least`: the background writer
/// appends them in batches, and has no hook to flush on demand.
async fn audit_records(app: &TestApp, query: &str, at_least: usize) -> Vec<Value> {
    let auditor = token("system/AuditEvent.rs", None);
    eventually(Duration::from_secs(5), Duration::from_millis(20), async || {
        let response = get(app, &format!("AuditEvent?{query}"), &auditor).await;
        assert_eq!(response.status(), 200);
        let bundle = json_of(response).await;
        let records: Vec<Value> =
            bundle["entry"].as_array().map(|e| e.iter().map(|e| e["resource"].clone()).collect()).unwrap_or_default();
        (records.len() >= at_least).then_some(records)
    })
    .await
    .unwrap_or_else(|| panic!("fewer than {at_least} audit records for {query}"))
}

#[tokio::test]
async fn every_request_leaves_an_audit_record_readable_only_with_the_audit_scope() {
    let (app, _jwks) = secure_app().await;
    seed(&app).await;
    let p1 = token("patient/*.rs", Some("p1"));

    assert_eq!(get(&app, "CarePlan/plan-1", &p1).await.status(), 200);
    assert_eq!(get(&app, "CarePlan?status=active&title=secret", &p1).await.status(), 200);
    assert_eq!(call(&app, Method::POST, "CarePlan", Some(&p1), Some(&plan("x", "p1"))).await.status(), 403);
    assert_eq!(app.get("CarePlan/plan-1").await.status(), 401);

    let reads = audit_records(&app, "entity=CarePlan/plan-1", 3).await;
    let success = reads.iter().find(|r| r["outcome"] == "0").expect("a successful read");
    assert_eq!(success["action"], "R");
    assert_eq!(success["subtype"][0]["code"], "read");
    assert_eq!(success["type"]["code"], "rest");
    let who: Vec<&Value> = success["agent"].as_array().expect("agents").iter().map(|a| &a["who"]).collect();
    assert!(who.iter().any(|w| w["reference"] == "Practitioner/nurse-lee"), "{success}");
    assert!(who.iter().any(|w| w["identifier"]["value"] == "ehr-app"), "{success}");
    let entities = success["entity"].as_array().expect("entities");
    assert!(entities.iter().any(|e| e["what"]["reference"] == "Patient/p1"), "{success}");
    let unauthenticated = reads.iter().find(|r| r["outcome"] == "4").expect("the 401 is recorded");
    assert_eq!(unauthenticated["outcomeDesc"], "HTTP 401");

    let searches = audit_records(&app, "patient=p1&entity=CarePlan", 2).await;
    let search = searches.iter().find(|r| r["action"] == "E").expect("the search");
    let text = search.to_string();
    assert!(text.contains("status,title") && !text.contains("secret"), "names, not values: {text}");
    let refused = searches.iter().find(|r| r["action"] == "C").expect("the refused create");
    assert_eq!(refused["outcome"], "4");
    assert_eq!(refused["outcomeDesc"], "HTTP 403");
    let by_agent = audit_records(&app, "agent=Practitioner/nurse-lee&_count=2", 2).await;
    assert_eq!(by_agent.len(), 2, "_count pages the results");
    let one = &by_agent[0];
    let read_back =
        get(&app, &format!("AuditEvent/{}", one["id"].as_str().expect("id")), &token("user/AuditEvent.r", None)).await;
    assert_eq!(read_back.status(), 200);
    let dated = audit_records(&app, "date=ge2020-01-01&date=le2999-12-31", 5).await;
    assert!(dated.len() >= 5);

    for (what, scope) in [
        ("a clinical scope", "user/*.cruds"),
        ("a patient scope", "patient/*.rs"),
        ("search only", "user/AuditEvent.r"),
    ] {
        let response = get(&app, "AuditEvent", &token(scope, Some("p1"))).await;
        assert_eq!(response.status(), 403, "{what}");
    }
    assert_eq!(app.get("AuditEvent").await.status(), 401);
    assert_eq!(
        call(&app, Method::POST, "AuditEvent", Some(&token("system/AuditEvent.cruds", None)), Some(&json!({})))
            .await
            .status(),
        405
    );
}

/// The AuditEvents read back from the trail keep their shape, whatever the storage holds: a
/// read, a search, a refused create and a transaction, with the values that change redacted.
#[tokio::test]
async fn audit_events_read_back_from_the_trail_keep_their_shape() {
    let (app, _jwks) = secure_app().await;
    seed(&app).await;
    let p1 = token("patient/*.rs", Some("p1"));
    let read = app
        .request(Method::GET, "CarePlan/plan-1")
        .bearer_auth(&p1)
        .header("x-request-id", "req-read-1")
        .send()
        .await
        .expect("the read reaches the server");
    assert_eq!(read.status(), 200);
    assert_eq!(get(&app, "CarePlan?status=active&subject=Patient/p1", &p1).await.status(), 200);
    assert_eq!(call(&app, Method::POST, "CarePlan", Some(&p1), Some(&plan("x", "p2"))).await.status(), 403);
    assert_eq!(app.get("Task/t-anonymous").await.status(), 401);

    // The seeding PUTs, the four requests above, and the trail's own searches: wait for the
    // first eleven, then keep the four.
    let mut records = eventually(Duration::from_secs(5), Duration::from_millis(20), async || {
        let mut records = audit_records(&app, "date=ge2020-01-01&_count=100", 1).await;
        records.retain(|r| !r["entity"].to_string().contains("AuditEvent"));
        (records.len() >= 11).then_some(records)
    })
    .await
    .expect("eleven audit records besides the trail's own searches");
    records.retain(|r| r["outcomeDesc"] != "HTTP 201");
    assert_eq!(records.len(), 4, "{records:?}");
    records.sort_by_key(|r| r.to_string());
    insta::with_settings!({ sort_maps => true }, {
        insta::assert_json_snapshot!("audit_events", records, {
            "[].id" => "[id]",
            "[].meta.lastUpdated" => "[instant]",
            "[].recorded" => "[instant]",
            "[].entity[].what.identifier.value" => insta::dynamic_redaction(|value, _| {
                if value.as_str() == Some("req-read-1") { value } else { "[request id]".into() }
            }),
        });
    });
}

#[tokio::test]
async fn every_response_carries_the_security_headers_and_cors_stays_closed_by_default() {
    let (app, _jwks) = secure_app().await;
    let valid = token("user/*.rs", None);

    for response in [
        app.get("CarePlan").await,
        get(&app, "CarePlan", &valid).await,
        get(&app, "CarePlan/none", &valid).await,
        app.get("metadata").await,
        app.request(Method::GET, "CarePlan")
            .header("origin", "https://evil.example")
            .bearer_auth(&valid)
            .send()
            .await
            .expect("sent"),
    ] {
        let status = response.status();
        assert_eq!(header(&response, "x-content-type-options"), "nosniff", "{status}");
        assert_eq!(header(&response, "x-frame-options"), "DENY", "{status}");
        assert_eq!(header(&response, "referrer-policy"), "no-referrer", "{status}");
        assert!(header(&response, "content-security-policy").starts_with("default-src 'none'"), "{status}");
        assert!(header(&response, "access-control-allow-origin").is_empty(), "{status}: CORS is closed");
        if response.url().path() != "/fhir/metadata" {
            assert_eq!(header(&response, "cache-control"), "no-store", "{status}");
        }
        assert!(!header(&response, "x-request-id").is_empty() || response.url().path() == "/fhir/metadata");
    }
}

#[tokio::test]
async fn cors_opens_to_configured_origins_only() {
    let jwks = JwksServer::start(Some(jwks_document())).await;
    let url = jwks.url.clone();
    let app = spawn_with(move |s| {
        s.auth = auth_settings(Some(url));
        s.hardening.cors_origins = vec!["https://app.example.org".into()];
    })
    .await;
    let preflight = |origin: &'static str| {
        app.request(Method::OPTIONS, "CarePlan")
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
    };

    let allowed = preflight("https://app.example.org").await.expect("sent");
    let refused = preflight("https://evil.example").await.expect("sent");

    assert!(allowed.status().is_success(), "{}", allowed.status());
    assert_eq!(header(&allowed, "access-control-allow-origin"), "https://app.example.org");
    assert!(header(&refused, "access-control-allow-origin").is_empty());
}

#[tokio::test]
async fn a_client_over_its_rate_limit_gets_429_and_others_are_unaffected() {
    let jwks = JwksServer::start(Some(jwks_document())).await;
    let url = jwks.url.clone();
    let app = spawn_with(move |s| {
        s.auth = auth_settings(Some(url));
        s.hardening.rate_limit = Some(RateLimit { per_second: 1, burst: 3 });
    })
    .await;
    let busy = token("user/*.rs", None);
    let other = sign(
        &{
            let mut c = claims("user/*.rs", None);
            c["client_id"] = json!("other-app");
            c
        },
        Algorithm::ES256,
        Some("ec-1"),
    );

    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(get(&app, "CarePlan", &busy).await.status().as_u16());
    }
    let limited = get(&app, "CarePlan", &busy).await;
    let retry_after = header(&limited, "retry-after");

    assert_eq!(&statuses[..3], [200, 200, 200]);
    assert!(statuses[3..].contains(&429), "{statuses:?}");
    assert_eq!(limited.status(), 429);
    assert!(retry_after.parse::<u64>().is_ok_and(|s| s >= 1), "{retry_after}");
    assert_eq!(json_of(limited).await["issue"][0]["code"], "throttled");
    assert_eq!(get(&app, "CarePlan", &other).await.status(), 200);
}

#[tokio::test]
async fn oversized_headers_are_refused_with_431() {
    let app = spawn_with(|s| s.hardening.max_header_bytes = 2048).await;

    let response =
        app.request(Method::GET, "CarePlan").header("x-padding", "a".repeat(4096)).send().await.expect("sent");

    assert_eq!(response.status(), 431);
    assert_eq!(json_of(response).await["issue"][0]["code"], "too-long");
    assert_eq!(app.get("CarePlan").await.status(), 200);
}

#[tokio::test]
async fn authorization_on_without_issuer_audience_or_keys_refuses_to_start() {
    for broken in [
        AuthSettings { issuer: None, ..auth_settings(Some("http://127.0.0.1:9/jwks".into())) },
        AuthSettings { audience: None, ..auth_settings(Some("http://127.0.0.1:9/jwks".into())) },
        auth_settings(None),
        AuthSettings { algorithms: vec!["HS256".into()], ..auth_settings(Some("http://127.0.0.1:9/jwks".into())) },
        AuthSettings { algorithms: vec!["none".into()], ..auth_settings(Some("http://127.0.0.1:9/jwks".into())) },
    ] {
        let dir = tempfile::tempdir().expect("directory");
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let mut settings = service::Settings::for_tests(&url, None);
        settings.auth = broken.clone();
        assert!(service::Application::build(settings).await.is_err(), "{broken:?}");
    }
}

#[tokio::test]
async fn authorization_errors_have_stable_shapes() {
    let (app, _jwks) = secure_app().await;

    let missing = app.get("Task").await;
    let invalid = get(&app, "Task", "not-a-token").await;
    let forbidden = get(&app, "Task", &token("user/CarePlan.rs", None)).await;

    let challenges = [challenge(&missing), challenge(&invalid), challenge(&forbidden)];
    insta::assert_json_snapshot!("unauthorized_without_token", json_of(missing).await);
    insta::assert_json_snapshot!("unauthorized_invalid_token", json_of(invalid).await);
    insta::assert_json_snapshot!("forbidden_scope", json_of(forbidden).await);
    insta::assert_json_snapshot!("challenges", challenges);
}

#[tokio::test]
async fn the_plan_summary_shows_a_patient_token_only_its_patients_resources() {
    let (app, _jwks) = secure_app().await;
    seed(&app).await;
    let p1 = token("patient/*.rs", Some("p1"));

    let own = get(&app, "CarePlan/plan-1/$summary", &p1).await;
    let other = get(&app, "CarePlan/plan-2/$summary", &p1).await;

    assert_eq!(own.status(), 200);
    let summary = json_of(own).await;
    let shown: Vec<String> = summary["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .skip(1)
        .map(|e| {
            format!(
                "{}/{}",
                e["resource"]["resourceType"].as_str().unwrap_or(""),
                e["resource"]["id"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert!(shown.contains(&"CarePlan/plan-1".to_owned()) && shown.contains(&"Task/task-1".to_owned()), "{shown:?}");
    assert!(
        !shown.iter().any(|s| s == "CareTeam/team-2" || s == "Task/task-2"),
        "another patient's resources leak: {shown:?}"
    );
    assert!(!summary["entry"][0].to_string().contains("task-2"), "nor in the narrative");
    assert_eq!(other.status(), 404, "another patient's plan is not confirmed to exist");
}

/// A patient-scoped subscriber hears only of its patient, reads only its own subscriptions, and
/// may not subscribe to a topic its token cannot read.
#[tokio::test]
async fn a_patient_scoped_subscription_hears_only_its_patient_and_needs_a_read_scope() {
    use crate::subscriptions::{status_param, subscription, Receiver};
    let receiver = Receiver::start().await;
    let jwks = JwksServer::start(Some(jwks_document())).await;
    let (url, allowed) = (jwks.url.clone(), receiver.base.clone());
    let app = spawn_with(move |s| {
        s.auth = auth_settings(Some(url));
        s.subscriptions.endpoints = vec![allowed].into();
    })
    .await;
    seed(&app).await;
    let admin = token("system/*.cruds", None);
    let patient = token("patient/Task.rs patient/Subscription.cruds", Some("p1"));
    let cannot_read = token("patient/Subscription.cruds", Some("p1"));
    let body = subscription("task-change", &receiver.url("p1"), &[], "full-resource");

    let refused = call(&app, Method::POST, "Subscription", Some(&cannot_read), Some(&body)).await;
    let created = call(&app, Method::POST, "Subscription", Some(&patient), Some(&body)).await;
    let others = call(
        &app,
        Method::POST,
        "Subscription",
        Some(&admin),
        Some(&subscription("task-change", &receiver.url("all"), &[], "id-only")),
    )
    .await;

    assert_eq!(refused.status(), 403);
    assert_eq!(created.status(), 201);
    assert_eq!(others.status(), 201);
    let created = json_of(created).await;
    let others = json_of(others).await;
    receiver.wait("p1", |got| got.iter().any(|r| r.kind() == "handshake")).await;
    receiver.wait("all", |got| got.iter().any(|r| r.kind() == "handshake")).await;
    // The subscriber sees its own subscription, not another's.
    let own = get(&app, &format!("Subscription/{}", created["id"].as_str().unwrap_or_default()), &patient).await;
    let hidden = get(&app, &format!("Subscription/{}", others["id"].as_str().unwrap_or_default()), &patient).await;
    let listed = json_of(get(&app, "Subscription", &patient).await).await;
    assert_eq!(own.status(), 200);
    assert_eq!(hidden.status(), 404);
    assert_eq!(ids(&listed), [format!("Subscription/{}", created["id"].as_str().unwrap_or_default())]);

    for (path, patient_of) in [("Task/task-2", "p2"), ("Task/task-1", "p1")] {
        let mut changed = task(&path[5..], patient_of, "requested", "plan-1");
        changed["description"] = json!("changed");
        assert_eq!(call(&app, Method::PUT, path, Some(&admin), Some(&changed)).await.status(), 200, "{path}");
    }

    let all = receiver.wait("all", |got| got.iter().filter(|r| r.kind() == "event-notification").count() >= 2).await;
    // Events are numbered when their write commits: p1's subscription numbered one, so once it
    // arrived nothing more will.
    let own_id = created["id"].as_str().unwrap_or_default();
    let status = json_of(get(&app, &format!("Subscription/{own_id}/$status"), &admin).await).await;
    assert_eq!(status_param(&status, "events-since-subscription-start")["valueString"], "1", "{status}");
    receiver.wait("p1", |got| got.iter().any(|r| r.kind() == "event-notification")).await;
    let heard: Vec<String> =
        receiver.notifications("p1").iter().flat_map(|r| r.events().into_iter().map(|(_, focus)| focus)).collect();
    assert_eq!(heard, [format!("{}/Task/task-1", app.base)], "only p1's Task: {all:?}");
    let full = receiver.notifications("p1").remove(0);
    assert_eq!(full.body["entry"][1]["resource"]["for"]["reference"], "Patient/p1");
}

#[tokio::test]
async fn health_and_metrics_answer_without_a_token_and_fhir_does_not() {
    // Arrange
    let (app, _jwks) = secure_app().await;

    // Act
    let mut statuses = Vec::new();
    for path in ["/livez", "/readyz", "/metrics"] {
        let response = app.client.get(app.root(path)).send().await.expect("sent");
        statuses.push((path, response.status().as_u16()));
    }
    let fhir = app.request(Method::GET, "Task").send().await.expect("sent");

    // Assert
    assert_eq!(statuses, [("/livez", 200), ("/readyz", 200), ("/metrics", 200)]);
    assert_eq!(fhir.status(), 401);
}

#[tokio::test]
async fn applying_a_template_needs_read_on_it_and_create_on_what_it_makes_within_the_tokens_patient() {
    let (app, _jwks) = secure_app().await;
    let admin = token("system/*.cruds", None);
    let template = json!({ "resourceType": "PlanDefinition", "id": "welcome", "status": "active",
        "action": [{ "title": "Welcome call", "participant": [{ "type": "practitioner", "role": { "text": "Care coordinator" } }],
                     "timingDuration": { "value": 3, "code": "d" } }] });
    assert_eq!(call(&app, Method::PUT, "PlanDefinition/welcome", Some(&admin), Some(&template)).await.status(), 201);
    let plans = || async { ids(&json_of(get(&app, "CarePlan", &admin).await).await).len() };
    let apply = |patient: &str| format!("PlanDefinition/welcome/$apply?subject=Patient/{patient}");

    let read_only = token("user/PlanDefinition.r", None);
    assert_eq!(get(&app, &apply("p1"), &read_only).await.status(), 403, "no create on CareTeam, CarePlan, Task");
    let no_read = token("user/CarePlan.c user/CareTeam.c user/Task.c", None);
    assert_eq!(get(&app, &apply("p1"), &no_read).await.status(), 403, "no read on PlanDefinition");
    let patient = token("user/PlanDefinition.r patient/CarePlan.c patient/CareTeam.c patient/Task.c", Some("p1"));
    assert_eq!(get(&app, &apply("p2"), &patient).await.status(), 403, "another patient's plan");
    assert_eq!(plans().await, 0, "nothing was created");

    assert_eq!(get(&app, &apply("p1"), &patient).await.status(), 201, "the token's own patient");
    let clinician = token("user/PlanDefinition.r user/CarePlan.c user/CareTeam.c user/Task.c", None);
    assert_eq!(get(&app, &apply("p2"), &clinician).await.status(), 201);
    assert_eq!(plans().await, 2);
}

#[tokio::test]
async fn a_patient_token_exports_only_its_compartment_and_only_its_client_sees_the_job() {
    use crate::export::{files, kick_off, manifest, status_url};
    let (app, _jwks) = secure_app().await;
    seed(&app).await;
    let exported = async |token: &str| {
        let kicked = kick_off(&app, Method::GET, "$export").bearer_auth(token).send().await.expect("kick-off");
        let status = status_url(&kicked);
        let manifest = manifest(&app.client, &status, Some(token)).await;
        let mut keys: Vec<String> = files(&app.client, &manifest, Some(token))
            .await
            .into_iter()
            .flat_map(|(ty, lines)| {
                lines.into_iter().map(move |line| {
                    let value: Value = serde_json::from_str(&line).expect("JSON");
                    format!("{ty}/{}", value["id"].as_str().expect("id"))
                })
            })
            .filter(|key| !key.starts_with("Provenance/"))
            .collect();
        keys.sort();
        (status, manifest, keys)
    };

    // A patient token: p1's compartment only.
    let patient = token("patient/*.rs", Some("p1"));
    let (status, manifest, keys) = exported(&patient).await;
    assert_eq!(keys, ["CarePlan/plan-1", "CareTeam/team-1", "Task/task-1", "Task/task-3"]);

    // A system token: everything.
    let system = token("system/*.rs", None);
    let (_, _, all) = exported(&system).await;
    assert_eq!(all.len(), 7, "{all:?}");

    // Another client sees neither the status nor the files; no token is 401.
    let mut other = claims("system/*.rs", None);
    other["client_id"] = json!("another-app");
    let other = sign(&other, Algorithm::ES256, Some("ec-1"));
    assert_eq!(get(&app, status.trim_start_matches(&app.base), &other).await.status(), 404);
    let file = manifest["output"][0]["url"].as_str().expect("url");
    assert_eq!(get(&app, file.trim_start_matches(&app.base), &other).await.status(), 404);
    assert_eq!(app.client.get(file).send().await.expect("file").status(), 401);

    // A token that may not search Tasks cannot export them.
    let narrow = token("system/CarePlan.rs", None);
    let refused =
        kick_off(&app, Method::GET, "$export?_type=Task").bearer_auth(&narrow).send().await.expect("kick-off");
    assert_eq!(refused.status(), 403);
}
