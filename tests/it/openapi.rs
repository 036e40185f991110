//! The OpenAPI document (issue #12, item 1): served without a token at
//! `/openapi.json` as OpenAPI 3.1, with the `{code, message}` error schema
//! and its codes and the bearer scheme; every documented operation is
//! routed, and the API adds no route the document leaves out.

use reqwest::Method;
use serde_json::Value;

use crate::support::TestApp;

/// The fallbacks' messages: what an unrouted path or method answers.
const NO_SUCH_ENDPOINT: &str = "no such endpoint";
const NO_SUCH_METHOD: &str = "this endpoint does not take that method";
const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

async fn served(app: &TestApp) -> Value {
    let response = app.http.get(format!("{}/openapi.json", app.base)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    serde_json::from_str(&response.text().await.unwrap()).unwrap()
}

#[tokio::test]
async fn the_document_is_openapi_3_1_with_the_error_table_and_the_bearer_scheme() {
    let app = TestApp::spawn().await;
    let document = served(&app).await;
    assert_eq!(document, serde_json::to_value(herald::api::document()).unwrap(), "served as generated");
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1."), "{}", document["openapi"]);
    assert_eq!(document["info"]["title"], "Herald");

    let schemas = &document["components"]["schemas"];
    let error = &schemas["Error"];
    assert_eq!(error["required"], serde_json::json!(["code", "message"]));
    assert_eq!(error["properties"]["code"]["$ref"], "#/components/schemas/ErrorCode");
    let codes: Vec<&str> = schemas["ErrorCode"]["enum"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    let table: Vec<&str> = herald::error::ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(codes, table);

    let schemes = &document["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["type"], "http");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["viber_auth_token"]["in"], "header");
    assert_eq!(schemes["viber_auth_token"]["name"], "X-Viber-Auth-Token");

    let paths = document["paths"].as_object().unwrap();
    // Every operation says how to authenticate (but the open ones), and
    // answers errors as `{code, message}` (but Viber's, which are 200s).
    for (path, item) in paths {
        for (method, operation) in item.as_object().unwrap() {
            let open = ["/healthz", "/openapi.json"].contains(&path.as_str());
            assert_eq!(operation.get("security").is_none(), open, "{method} {path}");
            if path != "/pa/set_webhook" && !open {
                let default = &operation["responses"]["default"]["content"]["application/json"]["schema"];
                assert_eq!(default["$ref"], "#/components/schemas/Error", "{method} {path}");
            }
        }
    }
    // Request and answer schemas are named, not left out.
    let create = &paths["/v1/webhooks"]["post"];
    assert_eq!(
        create["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/CreateWebhook"
    );
    assert_eq!(
        create["responses"]["201"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/WebhookAnswer"
    );
    let list = &paths["/v1/deliveries"]["get"];
    let parameters: Vec<&str> =
        list["parameters"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(parameters, ["status", "webhook_id", "type", "since", "until", "limit", "cursor"]);
}

/// A request that reaches a routed handler answers anything but the
/// fallbacks' 404s; an unrouted method on a routed path answers the
/// method fallback.
#[tokio::test]
async fn every_documented_operation_is_routed_and_no_other_method_is() {
    let app = TestApp::spawn().await;
    let document = served(&app).await;
    let paths = document["paths"].as_object().unwrap();
    assert!(paths.len() >= 20, "{:?}", paths.keys());
    for (path, item) in paths {
        let concrete = path.replace("{id}", "x");
        for method in METHODS {
            let verb = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let (status, body) = app.call(verb, &concrete, &app.token, None).await;
            let message = body["message"].as_str().unwrap_or_default();
            if item.get(method).is_some() {
                assert!(
                    !(status == 404 && [NO_SUCH_ENDPOINT, NO_SUCH_METHOD].contains(&message)),
                    "{method} {path} is documented but not routed: {status} {body}"
                );
            } else {
                assert_eq!(
                    (status.as_u16(), message),
                    (404, NO_SUCH_METHOD),
                    "{method} {path} is routed but undocumented"
                );
            }
        }
    }
    let (status, body) = app.call(Method::GET, "/v1/nothing-here", &app.token, None).await;
    assert_eq!((status.as_u16(), body["message"].as_str()), (404, Some(NO_SUCH_ENDPOINT)));
}

/// The router is made from the document's list (`api::routes`): a route
/// added beside it, with axum's `.route`, would be missing from the
/// document. Only `/metrics`'s own listener (`--metrics-listen`, outside
/// the API) is built that way.
#[test]
fn the_api_adds_routes_only_through_the_documented_list() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap().to_str().unwrap();
        let plain_routes = text.matches(".route(").count() + text.matches(".nest(\"").count();
        let allowed = match name {
            // `.nest("/v1", v1)` of the documented routers.
            "mod.rs" => 1,
            "metrics.rs" => 1,
            _ => 0,
        };
        assert_eq!(plain_routes, allowed, "{name}: a route outside `api::routes` would be missing from the document");
        checked += 1;
    }
    assert!(checked >= 8);
}
