//! The message object: what a room's history holds and every `message` frame carries.
//!
//! A message is read in its current state (issue 22): besides what its `send` gave, it may name
//! the message it replies to, and later changes may have edited its body, deleted it (a
//! tombstone with an empty body) or reacted to it. Those parts are rare, so they live in one
//! [`Extras`] behind an `Option<Box<..>>`: a plain message pays 8 bytes for them, not the ~70 of
//! flat fields, in every history ring and every reply. On the wire they are flat fields of the
//! message object, omitted when absent, so a plain message's JSON is byte for byte what it was
//! before they existed: serde's `flatten` would do that too, but it encodes a struct as a map
//! of unknown length and decodes through a buffered copy of the whole object, and the server
//! encodes every delivered message. So `Message` is (de)serialized through [`WireRef`] and
//! [`Wire`], plain derived structs with those flat fields.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::MessageId;

/// A chat message as stored in a room's history and delivered to its members, in its current
/// state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Room the message belongs to.
    pub room: String,
    /// Id assigned by the broker: strictly increasing within a room, opaque to clients.
    pub id: MessageId,
    /// Name of the sender.
    pub from: String,
    /// Message text; `""` once the message is deleted.
    pub body: String,
    /// Time the broker accepted the message, in Unix milliseconds.
    pub ts: u64,
    /// The sender's nonce, if its `send` carried one.
    pub nonce: Option<String>,
    /// The rarely present parts (reply, edit, deletion, reactions), boxed so a plain message
    /// stays small; `None` for a message that has none of them. Serialized flat, as the
    /// message object's own optional fields.
    pub extras: Option<Box<Extras>>,
}

/// The parts of a [`Message`] most messages never have. Each is omitted from the JSON when
/// absent (`None`, `false`, empty), so an `Extras` that is all defaults encodes like none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extras {
    /// The message of the same room this one replies to (its `send`'s `reply_to`). Dropped
    /// when the message is deleted: a tombstone quotes nothing.
    pub reply_to: Option<MessageId>,
    /// When the body was last edited, in Unix milliseconds; `None` if it never was.
    pub edited: Option<u64>,
    /// The message was deleted: its body is gone (`""`), only its place in the room remains.
    pub deleted: bool,
    /// The reactions to the message, one entry per distinct emoji (at most
    /// [`MAX_REACTIONS`](crate::MAX_REACTIONS)), in the order they first appeared.
    pub reactions: Vec<Reaction>,
}

impl Extras {
    /// Whether nothing is set, so the message needs no box (and encodes as a plain one).
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// One emoji's reactions to a message: how many users reacted with it and the first of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Reaction {
    /// The emoji: one grapheme cluster (see [`validate_emoji`](crate::validate_emoji)).
    pub emoji: String,
    /// How many users reacted with it: exact, however many `users` lists.
    pub count: u32,
    /// Who reacted, earliest first: at most
    /// [`REACTION_USERS_SHOWN`](crate::REACTION_USERS_SHOWN) of them, so a message's frame
    /// stays bounded in a huge room.
    pub users: Vec<String>,
}

impl Message {
    /// The message it replies to, if any.
    pub fn reply_to(&self) -> Option<MessageId> {
        self.extras.as_ref().and_then(|e| e.reply_to)
    }

    /// When it was last edited, in Unix milliseconds, if it was.
    pub fn edited(&self) -> Option<u64> {
        self.extras.as_ref().and_then(|e| e.edited)
    }

    /// Whether it was deleted (its body is then `""`).
    pub fn is_deleted(&self) -> bool {
        self.extras.as_ref().is_some_and(|e| e.deleted)
    }

    /// Its reactions, one per distinct emoji.
    pub fn reactions(&self) -> &[Reaction] {
        self.extras.as_ref().map_or(&[], |e| &e.reactions)
    }

    /// Its extras, to change them, boxed on first use.
    pub fn extras_mut(&mut self) -> &mut Extras {
        self.extras.get_or_insert_with(Box::default)
    }
}

/// Boxes `extras` unless it is empty, so a plain message never carries a box.
fn boxed(extras: Extras) -> Option<Box<Extras>> {
    (!extras.is_empty()).then(|| Box::new(extras))
}

/// The message object as it is encoded: the fields of [`Message`] and of its [`Extras`], flat,
/// borrowed (nothing is copied to encode). Field order is the JSON's.
#[derive(Serialize)]
struct WireRef<'a> {
    room: &'a str,
    id: MessageId,
    from: &'a str,
    body: &'a str,
    ts: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_to: Option<MessageId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    edited: Option<u64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    deleted: bool,
    #[serde(skip_serializing_if = "<[Reaction]>::is_empty")]
    reactions: &'a [Reaction],
}

impl Serialize for Message {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        WireRef {
            room: &self.room,
            id: self.id,
            from: &self.from,
            body: &self.body,
            ts: self.ts,
            nonce: self.nonce.as_deref(),
            reply_to: self.reply_to(),
            edited: self.edited(),
            deleted: self.is_deleted(),
            reactions: self.reactions(),
        }
        .serialize(serializer)
    }
}

// The message object as it is decoded (and described by the server API's OpenAPI schema): the
// flat fields, each optional one defaulting to absent, so a message from before they existed
// still decodes. Its doc comment is the schema's description, so it describes a message.
/// A chat message as stored in a room's history and delivered to its members.
#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
struct Wire {
    /// Room the message belongs to.
    room: String,
    /// Id assigned by the broker: strictly increasing within a room, opaque to clients.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "1764290000000-0"))]
    id: MessageId,
    /// Name of the sender.
    from: String,
    /// Message text.
    body: String,
    /// Time the broker accepted the message, in Unix milliseconds.
    ts: u64,
    /// The sender's nonce, if its `send` carried one.
    #[serde(default)]
    nonce: Option<String>,
    /// The message this one replies to.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "1764289990000-0"))]
    reply_to: Option<MessageId>,
    /// When the body was last edited, in Unix milliseconds.
    #[serde(default)]
    edited: Option<u64>,
    /// The message was deleted (its `body` is then empty).
    #[serde(default)]
    deleted: bool,
    /// The reactions, one per distinct emoji.
    #[serde(default)]
    reactions: Vec<Reaction>,
}

impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let w = Wire::deserialize(deserializer)?;
        Ok(Message {
            room: w.room,
            id: w.id,
            from: w.from,
            body: w.body,
            ts: w.ts,
            nonce: w.nonce,
            extras: boxed(Extras {
                reply_to: w.reply_to,
                edited: w.edited,
                deleted: w.deleted,
                reactions: w.reactions,
            }),
        })
    }
}

/// The API's schema of a message is its wire form's (`Wire`), under the name `Message`.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Message {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        <Wire as utoipa::PartialSchema>::schema()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Message {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("Message")
    }

    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        <Wire as utoipa::ToSchema>::schemas(schemas);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a plain message costs in memory: the extras add one pointer, not their fields.
    #[test]
    fn a_plain_message_stays_small() {
        // 120 bytes before issue 22 (three strings, an optional one, an id and a time); the
        // extras' box adds 8. Flat, they would have added 72.
        assert_eq!(std::mem::size_of::<Message>(), 128);
        assert_eq!(std::mem::size_of::<Option<Box<Extras>>>(), 8);
    }

    #[test]
    fn empty_extras_decode_as_none() {
        let m: Message = serde_json::from_str(
            r#"{"room":"r","id":"1-0","from":"a","body":"b","ts":1,"deleted":false,"reactions":[]}"#,
        )
        .unwrap();
        assert_eq!(m.extras, None);
    }

    #[test]
    fn extras_mut_boxes_once() {
        let mut m: Message =
            serde_json::from_str(r#"{"room":"r","id":"1-0","from":"a","body":"b","ts":1}"#)
                .unwrap();
        m.extras_mut().edited = Some(5);
        m.extras_mut().deleted = true;
        assert_eq!(m.edited(), Some(5));
        assert!(m.is_deleted());
        assert_eq!(m.reply_to(), None);
        assert!(m.reactions().is_empty());
    }
}
