//! The signed HTTP API for sockets, rooms and users: what the app calls at
//! any later time (a queued job, a controller) to reach handler-route
//! connections. Signed like the Pusher API's `/apps/{id}/events`
//! (`auth_key`, `auth_timestamp`, `auth_version=1.0`, `body_md5`,
//! `auth_signature` over `"POST\n<path>\n<sorted query>"`), so only the
//! holder of the app secret can use it. Every endpoint is a `POST` with a
//! JSON body; success is `200 {}`, failure `{"error": "..."}` with 400,
//! 401, 404 or 413.
//!
//! | endpoint | body |
//! |---|---|
//! | `/apps/{app_id}/sockets/{socket_id}/send` | `{"data": X}` or `{"data": B64, "binary": true}` |
//! | `/apps/{app_id}/sockets/{socket_id}/join` | `{"room": R}` |
//! | `/apps/{app_id}/sockets/{socket_id}/leave` | `{"room": R}` |
//! | `/apps/{app_id}/sockets/{socket_id}/close` | `{"code": 4000, "reason": "bye"}` (both optional) |
//! | `/apps/{app_id}/sockets/{socket_id}/actions` | `{"actions": [..]}` |
//! | `/apps/{app_id}/rooms/{room}/broadcast` | `{"data": X, "except": ["socket_id", ..]}` |
//! | `/apps/{app_id}/users/{user_id}/send` | `{"data": X}` |
//!
//! All work cluster-wide. A socket that exists nowhere is a 404 when that
//! is knowable here (a single node); with a cluster adapter a socket that
//! is not on this node is handed to the others, best effort, and the
//! answer is 200.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use percent_encoding::percent_decode_str;
use serde_json::{Value, json};

use super::actions::{self, binary_of, close_of, text_of};
use super::sockets::AppSockets;
use crate::core::connection::SocketId;
use crate::custom::conn::Message;
use crate::http_api::signature;
use crate::http_api::{ApiError, ApiRequest, ApiResult};

/// Whether `path` is one of this API's endpoints (any method: a `GET` on
/// one is answered 404 here, not by the Pusher API).
pub fn is_socket_api(path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/apps/") else {
        return false;
    };
    let s: Vec<&str> = rest.split('/').collect();
    matches!(
        s.as_slice(),
        [
            _,
            "sockets",
            _,
            "send" | "join" | "leave" | "close" | "actions"
        ] | [_, "rooms", _, "broadcast"]
            | [_, "users", _, "send"]
    )
}

/// Answers a socket API request (`is_socket_api` said yes).
pub(crate) async fn handle(
    sockets: &HashMap<String, Arc<AppSockets>>,
    req: &ApiRequest<'_>,
) -> ApiResult {
    let rest = req.path.strip_prefix("/apps/").unwrap_or_default();
    let segments: Vec<&str> = rest.split('/').collect();
    let Some(app) = sockets.get(segments[0]) else {
        return Err(ApiError::new(
            404,
            format!("no app with id {:?} has handler routes", segments[0]),
        ));
    };
    let hub = app.hub();
    hub.stats.api_call();
    let params = signature::parse_query(req.query);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if let Err(e) = signature::verify(&hub.app, req.method, req.path, &params, req.body, now) {
        hub.stats.error("api_unauthorized");
        return Err(e);
    }
    if let Some(rate) = req.app_rate
        && !rate.check(&hub.app.id, hub.app.max_api_rate)
    {
        hub.stats.error("api_rate_limited");
        return Err(ApiError::new(
            429,
            format!(
                "app {} is over its API rate (at most {} requests per second); slow down",
                hub.app.id, hub.app.max_api_rate
            ),
        ));
    }
    if req.method != "POST" {
        return Err(ApiError::new(
            404,
            format!("no API endpoint {} {} (use POST)", req.method, req.path),
        ));
    }
    let body: Value = if req.body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(req.body)
            .map_err(|e| ApiError::new(400, format!("request body is not valid JSON: {e}")))?
    };
    if !body.is_object() {
        return Err(ApiError::new(400, "request body must be a JSON object"));
    }
    let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
    let result = match &segments[1..] {
        ["sockets", id, op] => socket_op(app, &decode(id), op, &body),
        ["rooms", room, "broadcast"] => broadcast(app, &decode(room), &body),
        ["users", user, "send"] => {
            let data = data_of(&body)?;
            app.rooms()
                .to_user(&decode(user), data)
                .map_err(|e| ApiError::new(400, e.to_string()))
        }
        _ => Err(ApiError::new(
            404,
            format!("no API endpoint POST {}", req.path),
        )),
    };
    if let Err(e) = &result {
        hub.stats.error(if e.status == 404 {
            "api_unknown_socket"
        } else {
            "api_bad_request"
        });
    }
    result.map(|()| json!({}))
}

/// `"data"` of a body: a string as is, other JSON serialised; base64 with
/// `"binary": true`.
fn data_of(body: &Value) -> Result<Message, ApiError> {
    let data = body
        .get("data")
        .ok_or_else(|| ApiError::new(400, "missing \"data\""))?;
    if body.get("binary").and_then(Value::as_bool) == Some(true) {
        binary_of(data).map_err(|e| ApiError::new(400, e))
    } else {
        Ok(text_of(data))
    }
}

fn room_of(body: &Value) -> Result<String, ApiError> {
    match body.get("room") {
        Some(Value::String(r)) if !r.is_empty() => Ok(r.clone()),
        _ => Err(ApiError::new(400, "missing \"room\" (a non-empty string)")),
    }
}

fn socket_op(app: &AppSockets, id: &str, op: &str, body: &Value) -> Result<(), ApiError> {
    let id = SocketId::parse(id)
        .ok_or_else(|| ApiError::new(400, format!("{id:?} is not a socket id")))?;
    let local = app.local(&id);
    if local.is_none() && !app.clustered() {
        return Err(ApiError::new(404, "unknown socket"));
    }
    let action = match op {
        "send" => {
            let data = data_of(body)?;
            app.send_to(&id, data);
            return Ok(());
        }
        "join" => json!({ "join": room_of(body)? }),
        "leave" => json!({ "leave": room_of(body)? }),
        "close" => {
            let (code, reason) = close_of(Some(body)).map_err(|e| ApiError::new(400, e))?;
            json!({ "close": { "code": code, "reason": reason } })
        }
        "actions" => {
            let list = match body.get("actions") {
                Some(Value::Array(list)) => list.clone(),
                _ => return Err(ApiError::new(400, "missing \"actions\" (an array)")),
            };
            // Refuse what would be ignored, so the app hears about it.
            let (_, errors) = actions::Action::parse_list(Some(&Value::Array(list.clone())));
            if let Some(e) = errors.first() {
                return Err(ApiError::new(400, e.clone()));
            }
            app.run_for(&id, "(socket API)", list);
            return Ok(());
        }
        _ => return Err(ApiError::new(404, format!("no socket operation {op:?}"))),
    };
    // One action, checked the same way before it runs.
    if let Err(e) = actions::Action::parse(&action) {
        return Err(ApiError::new(400, e));
    }
    if let (Some(conn), "join") = (&local, op) {
        // A refused join is the caller's error, not a log line.
        let room = room_of(body)?;
        return conn
            .join(&room)
            .map_err(|e| ApiError::new(400, e.to_string()));
    }
    app.run_for(&id, "(socket API)", vec![action]);
    Ok(())
}

fn broadcast(app: &AppSockets, room: &str, body: &Value) -> Result<(), ApiError> {
    let data = data_of(body)?;
    let except = match body.get("except") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(ids)) => ids
            .iter()
            .map(|v| {
                v.as_str()
                    .and_then(SocketId::parse)
                    .ok_or_else(|| ApiError::new(400, format!("except: {v} is not a socket id")))
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => {
            return Err(ApiError::new(
                400,
                "\"except\" must be an array of socket ids",
            ));
        }
    };
    app.rooms()
        .broadcast(room, data, &except)
        .map_err(|e| ApiError::new(400, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert!(is_socket_api("/apps/1/sockets/1.2/send"));
        assert!(is_socket_api("/apps/1/sockets/1.2/actions"));
        assert!(is_socket_api("/apps/1/rooms/chat.1/broadcast"));
        assert!(is_socket_api("/apps/1/users/7/send"));
        assert!(!is_socket_api("/apps/1/events"));
        assert!(!is_socket_api("/apps/1/users/7/terminate_connections"));
        assert!(!is_socket_api("/apps/1/sockets/1.2/explode"));
    }
}
