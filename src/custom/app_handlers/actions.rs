//! Actions: what a handler's answer (or the signed socket API) asks the
//! server to do for one connection. Each is a one-key JSON object:
//!
//! | action | effect |
//! |---|---|
//! | `{"send": X}` | text frame to this connection (`X` a string as is, any other JSON serialised) |
//! | `{"send_binary": B64}` | binary frame to this connection |
//! | `{"join": ROOM}` / `{"leave": ROOM}` | room membership of this connection |
//! | `{"broadcast": {"room": R, "data": X, "except_self": true}}` | every connection in room `R`, cluster-wide |
//! | `{"to_user": {"user_id": U, "data": X}}` | every connection of user `U`, cluster-wide |
//! | `{"to_socket": {"socket_id": S2, "data": X}}` | one other connection, wherever it lives |
//! | `{"close": {"code": 4000, "reason": "bye"}}` | close this connection after what is queued |
//!
//! Actions come only from the app (a signed answer to our own call, or a
//! signed API request): nothing a client sends is ever read as an action.
//! A malformed or unknown action is logged with the route and skipped; the
//! others still run, in order.

use base64::Engine;
use serde_json::Value;

use super::sockets::AppSockets;
use crate::core::connection::SocketId;
use crate::custom::conn::{Conn, Message};

/// One parsed action.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
    Send(Message),
    Join(String),
    Leave(String),
    Broadcast {
        room: String,
        data: Message,
        except_self: bool,
    },
    ToUser {
        user_id: String,
        data: Message,
    },
    ToSocket {
        socket_id: SocketId,
        data: Message,
    },
    Close {
        code: u16,
        reason: String,
    },
}

/// `X` of an action: a string as is, any other JSON serialised.
pub(crate) fn text_of(value: &Value) -> Message {
    match value {
        Value::String(s) => Message::text(s.clone()),
        other => Message::text(other.to_string()),
    }
}

fn string_of(value: &Value, what: &str) -> Result<String, String> {
    match value {
        Value::String(s) if !s.is_empty() => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(format!("{what} must be a non-empty string")),
    }
}

fn field<'a>(obj: &'a Value, name: &str, action: &str) -> Result<&'a Value, String> {
    obj.get(name)
        .ok_or_else(|| format!("{action}: missing \"{name}\""))
}

/// Decodes base64 data into a binary message.
pub(crate) fn binary_of(value: &Value) -> Result<Message, String> {
    let Value::String(b64) = value else {
        return Err("binary data must be a base64 string".into());
    };
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map(Message::binary)
        .map_err(|e| format!("binary data is not base64: {e}"))
}

/// A close code the server may send for the app: 1000, or 3000–4999.
pub(crate) fn close_of(value: Option<&Value>) -> Result<(u16, String), String> {
    let code = match value.and_then(|v| v.get("code")) {
        None | Some(Value::Null) => 4000,
        Some(v) => v
            .as_u64()
            .and_then(|c| u16::try_from(c).ok())
            .filter(|&c| c == 1000 || (3000..=4999).contains(&c))
            .ok_or("close: \"code\" must be 1000 or 3000-4999")?,
    };
    let reason = match value.and_then(|v| v.get("reason")) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err("close: \"reason\" must be a string".into()),
    };
    Ok((code, reason))
}

impl Action {
    /// Parses one action object.
    pub(crate) fn parse(value: &Value) -> Result<Action, String> {
        let Some(obj) = value.as_object().filter(|o| o.len() == 1) else {
            return Err(format!(
                "an action is an object with one key, got {}",
                short(value)
            ));
        };
        let Some((name, arg)) = obj.iter().next() else {
            return Err("empty action".into());
        };
        Ok(match name.as_str() {
            "send" => Action::Send(text_of(arg)),
            "send_binary" => Action::Send(binary_of(arg)?),
            "join" => Action::Join(string_of(arg, "join: the room")?),
            "leave" => Action::Leave(string_of(arg, "leave: the room")?),
            "broadcast" => Action::Broadcast {
                room: string_of(field(arg, "room", name)?, "broadcast: \"room\"")?,
                data: data_of(arg, name)?,
                except_self: match arg.get("except_self") {
                    None | Some(Value::Null) => false,
                    Some(Value::Bool(b)) => *b,
                    Some(_) => {
                        return Err("broadcast: \"except_self\" must be true or false".into());
                    }
                },
            },
            "to_user" => Action::ToUser {
                user_id: string_of(field(arg, "user_id", name)?, "to_user: \"user_id\"")?,
                data: data_of(arg, name)?,
            },
            "to_socket" => {
                let id = string_of(field(arg, "socket_id", name)?, "to_socket: \"socket_id\"")?;
                Action::ToSocket {
                    socket_id: SocketId::parse(&id)
                        .ok_or_else(|| format!("to_socket: {id:?} is not a socket id"))?,
                    data: data_of(arg, name)?,
                }
            }
            "close" => {
                let (code, reason) = close_of(Some(arg))?;
                Action::Close { code, reason }
            }
            other => return Err(format!("unknown action {other:?}")),
        })
    }

    /// Parses an `"actions"` array; malformed entries come back as errors.
    pub(crate) fn parse_list(value: Option<&Value>) -> (Vec<Action>, Vec<String>) {
        let mut actions = Vec::new();
        let mut errors = Vec::new();
        match value {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    match Action::parse(item) {
                        Ok(a) => actions.push(a),
                        Err(e) => errors.push(format!("actions[{i}]: {e}")),
                    }
                }
            }
            Some(other) => errors.push(format!(
                "\"actions\" must be an array, got {}",
                short(other)
            )),
        }
        (actions, errors)
    }
}

/// `"data"` of an action, with `"binary": true` meaning base64.
fn data_of(arg: &Value, action: &str) -> Result<Message, String> {
    let data = field(arg, "data", action)?;
    if arg.get("binary").and_then(Value::as_bool) == Some(true) {
        binary_of(data).map_err(|e| format!("{action}: {e}"))
    } else {
        Ok(text_of(data))
    }
}

fn short(value: &Value) -> String {
    let mut s = value.to_string();
    if s.len() > 80 {
        let mut end = 80;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// Runs `actions` for `conn`, in order. Problems are logged with `route`
/// and counted; they never stop the other actions.
pub(crate) fn run(sockets: &AppSockets, conn: &Conn, route: &str, actions: Vec<Action>) {
    for action in actions {
        if let Err(e) = run_one(sockets, conn, action) {
            tracing::warn!(route, socket_id = %conn.id(), error = %e, "handler action refused");
            sockets.hub().stats.error("handler_bad_action");
        }
    }
}

fn run_one(sockets: &AppSockets, conn: &Conn, action: Action) -> Result<(), String> {
    let rooms = conn.rooms();
    match action {
        Action::Send(m) => {
            conn.send(m);
        }
        Action::Join(room) => conn.join(&room).map_err(|e| e.to_string())?,
        Action::Leave(room) => {
            conn.leave(&room);
        }
        Action::Broadcast {
            room,
            data,
            except_self,
        } => {
            let except = if except_self {
                vec![conn.id().clone()]
            } else {
                Vec::new()
            };
            rooms
                .broadcast(&room, data, &except)
                .map_err(|e| e.to_string())?;
        }
        Action::ToUser { user_id, data } => {
            rooms.to_user(&user_id, data).map_err(|e| e.to_string())?
        }
        Action::ToSocket { socket_id, data } => {
            sockets.send_to(&socket_id, data);
        }
        Action::Close { code, reason } => conn.close(code, &reason),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_every_action() {
        let p = |v: Value| Action::parse(&v);
        assert_eq!(
            p(json!({"send": "hi"})),
            Ok(Action::Send(Message::text("hi")))
        );
        assert_eq!(
            p(json!({"send": {"a": 1}})),
            Ok(Action::Send(Message::text(r#"{"a":1}"#)))
        );
        assert_eq!(
            p(json!({"send_binary": "AAEC"})),
            Ok(Action::Send(Message::binary(vec![0u8, 1, 2])))
        );
        assert_eq!(
            p(json!({"join": "room.1"})),
            Ok(Action::Join("room.1".into()))
        );
        assert_eq!(
            p(json!({"leave": "room.1"})),
            Ok(Action::Leave("room.1".into()))
        );
        assert_eq!(
            p(json!({"broadcast": {"room": "r", "data": "x", "except_self": true}})),
            Ok(Action::Broadcast {
                room: "r".into(),
                data: Message::text("x"),
                except_self: true
            })
        );
        assert_eq!(
            p(json!({"to_user": {"user_id": 7, "data": [1]}})),
            Ok(Action::ToUser {
                user_id: "7".into(),
                data: Message::text("[1]")
            })
        );
        assert!(matches!(
            p(json!({"to_socket": {"socket_id": "1.2", "data": "x"}})),
            Ok(Action::ToSocket { .. })
        ));
        assert_eq!(
            p(json!({"close": {"code": 4001, "reason": "bye"}})),
            Ok(Action::Close {
                code: 4001,
                reason: "bye".into()
            })
        );
        assert_eq!(
            p(json!({"close": {}})),
            Ok(Action::Close {
                code: 4000,
                reason: String::new()
            })
        );
    }

    #[test]
    fn refuses_malformed_actions() {
        let p = |v: Value| Action::parse(&v).unwrap_err();
        assert!(p(json!({"explode": 1})).contains("unknown action"));
        assert!(p(json!({"send": 1, "join": "x"})).contains("one key"));
        assert!(p(json!("send")).contains("one key"));
        assert!(p(json!({"send_binary": "%%%"})).contains("base64"));
        assert!(p(json!({"join": ""})).contains("non-empty"));
        assert!(p(json!({"broadcast": {"data": "x"}})).contains("room"));
        assert!(p(json!({"to_socket": {"socket_id": "abc", "data": "x"}})).contains("socket id"));
        assert!(p(json!({"close": {"code": 1006}})).contains("code"));
        let (ok, errors) =
            Action::parse_list(Some(&json!([{"send": "a"}, {"bogus": 1}, {"send": "b"}])));
        assert_eq!(ok.len(), 2);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("actions[1]"));
        let (ok, errors) = Action::parse_list(Some(&json!({"send": "a"})));
        assert!(ok.is_empty() && errors.len() == 1);
    }
}
