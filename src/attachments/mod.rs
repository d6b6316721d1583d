//! The attachment service: who may upload into a room and download from it, the limits, the
//! type of a file (sniffed from its bytes, never the client's word), images' size and thumbnail,
//! and the files a chat carries.
//!
//! Owns: those rules and the upload's [`Writer`], which hands the store one chunk at a time (one in
//! flight per upload, so an upload holds at most a chunk in memory; an image is kept whole to be
//! decoded, within `--max-attachment`). May touch: the store. Must not: parse HTTP (the endpoint
//! streams the body in) or touch the shards.

mod image;

pub use crate::rooms::Refused;
pub use image::inline;

use std::time::{Duration, SystemTime};

use crate::hub::Hub;
use crate::protocol::{millis, ErrorCode, Millis};
use crate::rooms::{self, Access};
use crate::store::attachments::{Attachment, Get, Got, Put, CHUNK};
use crate::store::ops::{Answer, Outcome, Read, Write};
use crate::store::Store;

/// An upload no message takes within this long is deleted.
pub const UNCLAIMED_FOR: Duration = Duration::from_secs(3600);
/// How often unclaimed uploads are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// The longest a file name is kept (longer: cut).
const MAX_NAME: usize = 255;

fn store(hub: &Hub) -> Result<&Store, Refused> {
    hub.store().ok_or_else(|| Refused::new(ErrorCode::NotFound, "this server stores no files"))
}

async fn get(store: &Store, get: Get) -> Result<Got, Refused> {
    match store.read(Read::Attachment(get)).await {
        Ok(Answer::Attachment(got)) => Ok(got),
        _ => Err(Refused::unavailable()),
    }
}

async fn put(store: &Store, put: Put) -> Result<Outcome, Refused> {
    let write = Write::Attachment(Box::new(put));
    store.write_blob_and_wait(write).await.map_err(|_| Refused::unavailable())
}

/// A file name as kept: no path, no control characters, at most [`MAX_NAME`] characters.
pub fn clean_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let kept: String = base.chars().filter(|c| !c.is_control()).take(MAX_NAME).collect();
    if kept.trim().is_empty() {
        "file".to_owned()
    } else {
        kept
    }
}

/// Whether `user` may upload `declared` bytes (when told) into `room` now: a participant, within
/// the size, its quota and its upload rate.
pub async fn may_upload(
    hub: &Hub,
    room: &str,
    user: &str,
    declared: Option<u64>,
) -> Result<(), Refused> {
    let store = store(hub)?;
    let settings = hub.settings();
    if declared.is_some_and(|len| len > settings.max_attachment) {
        return Err(too_large(settings.max_attachment));
    }
    let (info, role, bar) =
        rooms::standing(store, room, user).await.map_err(|_| Refused::unavailable())?;
    match (info, role, bar) {
        (None, ..) => return Err(Refused::of(room, Access::NotFound)),
        (_, _, Some(bar)) => return Err(Refused::of(room, rooms::barred(room, &bar))),
        (_, None, _) => {
            return Err(Refused::new(ErrorCode::Forbidden, format!("not a participant of {room}")))
        }
        _ => {}
    }
    let since = millis(SystemTime::now() - Duration::from_secs(60));
    let Got::Usage { bytes, recent } = get(store, Get::Usage { user: user.into(), since }).await?
    else {
        return Err(Refused::unavailable());
    };
    if settings.upload_rate > 0 && recent >= i64::from(settings.upload_rate) {
        let message = format!("at most {} uploads a minute", settings.upload_rate);
        return Err(Refused::new(ErrorCode::RateLimited, message));
    }
    let after = u64::try_from(bytes).unwrap_or(0) + declared.unwrap_or(0);
    if after > settings.upload_quota {
        let message = format!("your files would take over {} bytes", settings.upload_quota);
        return Err(Refused::new(ErrorCode::QuotaExceeded, message));
    }
    Ok(())
}

pub fn too_large(max: u64) -> Refused {
    Refused::new(ErrorCode::TooLarge, format!("a file holds at most {max} bytes"))
}

/// An upload on its way into the store: bytes in, one chunk written at a time.
pub struct Writer<'a> {
    hub: &'a Hub,
    store: &'a Store,
    pub id: String,
    buffer: Vec<u8>,
    /// The first bytes, for sniffing.
    head: Vec<u8>,
    /// An image's every byte, for its thumbnail (`None` once it is not an image).
    whole: Option<Vec<u8>>,
    written: u64,
    chunks: i64,
}

/// What an upload became.
#[derive(Debug, Clone)]
pub struct Stored {
    pub id: String,
    pub size: u64,
    pub content_type: String,
    pub width: Option<i64>,
    pub height: Option<i64>,
}

impl<'a> Writer<'a> {
    /// A new upload of `name` by `user` into `room` (checked by [`may_upload`]).
    pub async fn begin(hub: &'a Hub, room: &str, user: &str, name: &str) -> Result<Self, Refused> {
        let store = store(hub)?;
        let id = crate::protocol::new_message_id();
        let at = millis(SystemTime::now());
        let begin = Put::Begin {
            id: id.clone(),
            room: room.into(),
            uploader: user.into(),
            name: clean_name(name),
            at,
        };
        put(store, begin).await?;
        let (buffer, head, whole) = (Vec::with_capacity(CHUNK), Vec::new(), Some(Vec::new()));
        Ok(Self { hub, store, id, buffer, head, whole, written: 0, chunks: 0 })
    }

    /// More bytes of the file.
    pub async fn push(&mut self, mut bytes: &[u8]) -> Result<(), Refused> {
        let max = self.hub.settings().max_attachment;
        self.written += bytes.len() as u64;
        if self.written > max {
            return Err(too_large(max));
        }
        if self.head.len() < image::SNIFF {
            let take = (image::SNIFF - self.head.len()).min(bytes.len());
            self.head.extend_from_slice(&bytes[..take]);
            if self.head.len() >= image::SNIFF && !image::is_image(&self.head) {
                self.whole = None;
            }
        }
        if let Some(whole) = &mut self.whole {
            whole.extend_from_slice(bytes);
        }
        while !bytes.is_empty() {
            let take = (CHUNK - self.buffer.len()).min(bytes.len());
            self.buffer.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.buffer.len() == CHUNK {
                self.flush().await?;
            }
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), Refused> {
        let data = std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK));
        let chunk = Put::Chunk { id: self.id.clone(), n: self.chunks, data };
        put(self.store, chunk).await?;
        self.chunks += 1;
        Ok(())
    }

    /// Every byte is in: its type from the bytes, an image checked, measured and thumbnailed. A
    /// refused one (an image that does not decode) is removed.
    pub async fn finish(self) -> Result<Stored, Refused> {
        let (store, id) = (self.store, self.id.clone());
        let finished = self.finished().await;
        if finished.is_err() {
            let _ = put(store, Put::Remove { id }).await;
        }
        finished
    }

    async fn finished(mut self) -> Result<Stored, Refused> {
        if !self.buffer.is_empty() {
            self.flush().await?;
        }
        let content_type = image::sniff(&self.head);
        let (mut width, mut height, mut thumbnail) = (None, None, None);
        if let Some(whole) = self.whole.take().filter(|_| image::is_image(&self.head)) {
            let made = tokio::task::spawn_blocking(move || image::thumbnail(&whole)).await;
            let made =
                made.map_err(|_| Refused::new(ErrorCode::BadRequest, "not a valid image"))?;
            let (w, h, png) = made.map_err(|why| Refused::new(ErrorCode::BadRequest, why))?;
            (width, height, thumbnail) = (Some(w), Some(h), Some(png));
        }
        let id = self.id.clone();
        let ct = content_type.clone();
        put(self.store, Put::Finish { id, content_type: ct, width, height, thumbnail }).await?;
        Ok(Stored { id: self.id, size: self.written, content_type, width, height })
    }

    /// Gives the upload up: what is stored of it goes.
    pub async fn abort(self) {
        let _ = put(self.store, Put::Remove { id: self.id }).await;
    }
}

/// The file `id`, when `user` (an admin: `admin`) may download it: complete, its message not
/// deleted, in a room the user may read; an upload no message carries yet is its uploader's only.
pub async fn readable(
    hub: &Hub,
    id: &str,
    user: Option<&str>,
    admin: bool,
) -> Result<Attachment, Refused> {
    let store = store(hub)?;
    let missing = || Refused::new(ErrorCode::NotFound, "no such file");
    let Got::Meta(meta) = get(store, Get::Meta { id: id.into() }).await? else {
        return Err(Refused::unavailable());
    };
    let meta = *meta.filter(|m| m.complete && !m.message_deleted).ok_or_else(missing)?;
    if meta.message.is_none() && user != Some(meta.uploader.as_str()) && !admin {
        return Err(missing());
    }
    match rooms::may_read(store, &meta.room, user, admin).await {
        Access::Allowed => Ok(meta),
        refusal => Err(Refused::of(&meta.room, refusal)),
    }
}

/// Chunks `first..=last` of file `id`.
pub async fn chunks(hub: &Hub, id: &str, first: i64, last: i64) -> Result<Vec<Vec<u8>>, Refused> {
    let Got::Chunks(chunks) = get(store(hub)?, Get::Chunks { id: id.into(), first, last }).await?
    else {
        return Err(Refused::unavailable());
    };
    Ok(chunks.into_iter().map(|(_, data)| data).collect())
}

pub async fn thumbnail(hub: &Hub, id: &str) -> Result<Option<Vec<u8>>, Refused> {
    match get(store(hub)?, Get::Thumbnail { id: id.into() }).await? {
        Got::Thumbnail(thumbnail) => Ok(thumbnail),
        _ => Err(Refused::unavailable()),
    }
}

/// The files a chat of `user` in `room` names (`ids`): each an upload of the user into the room
/// that no message carries yet. Their descriptions, for the message.
pub async fn carried(
    hub: &Hub,
    room: &str,
    user: &str,
    ids: &[String],
) -> Result<Vec<Attachment>, Refused> {
    let max = hub.settings().max_attachments_per_message;
    if ids.len() > max {
        let message = format!("a chat carries at most {max} attachments");
        return Err(Refused::new(ErrorCode::BadRequest, message));
    }
    let Got::Metas(metas) = get(store(hub)?, Get::Metas { ids: ids.to_vec() }).await? else {
        return Err(Refused::unavailable());
    };
    for id in ids {
        let usable = metas.iter().find(|m| &m.id == id).is_some_and(|m| {
            m.complete && m.room == room && m.uploader == user && m.message.is_none()
        });
        if !usable {
            let message = format!(
                "attachment {id} is not an upload of yours into {room} that no message carries"
            );
            return Err(Refused::new(ErrorCode::BadRequest, message));
        }
    }
    let mut ordered = Vec::with_capacity(ids.len());
    for id in ids {
        ordered.extend(metas.iter().find(|m| &m.id == id).cloned());
    }
    Ok(ordered)
}

/// Deletes unclaimed uploads, forever (a task of the HTTP runtime). It asks first and writes only
/// when there is something to delete: an idle broker commits nothing on its own, and a database
/// that went away is found by the writes that need it (a failed write marks the store down, which
/// refuses every chat until it is back).
pub async fn sweep(hub: Hub) {
    let mut every = tokio::time::interval(SWEEP_EVERY);
    loop {
        every.tick().await;
        let Some(store) = hub.store() else { return };
        let before: Millis = millis(SystemTime::now() - UNCLAIMED_FOR);
        if let Ok(Got::Unclaimed(true)) = get(store, Get::Unclaimed { before }).await {
            let _ = put(store, Put::Sweep { before, limit: 1000 }).await;
        }
    }
}

/// The ids a chat's `data.attachments` names: an array of strings (an empty one names none).
pub fn named(data: &serde_json::value::RawValue) -> Result<Vec<String>, Refused> {
    #[derive(serde::Deserialize)]
    struct Named {
        attachments: Option<Vec<String>>,
    }
    let bad = || Refused::new(ErrorCode::BadRequest, "attachments must be an array of ids");
    let named: Named = serde_json::from_str(data.get()).map_err(|_| bad())?;
    Ok(named.attachments.unwrap_or_default())
}

/// A chat's data with each named file described: `{"id","name","size","type","width","height"}`.
pub fn described(
    data: &serde_json::value::RawValue,
    files: &[Attachment],
) -> Result<Box<serde_json::value::RawValue>, Refused> {
    let bad = || Refused::new(ErrorCode::BadRequest, "data must be an object");
    let mut object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(data.get()).map_err(|_| bad())?;
    let described = files.iter().map(|file| {
        serde_json::json!({
            "id": file.id,
            "name": file.name,
            "size": file.size,
            "type": file.content_type,
            "width": file.width,
            "height": file.height,
        })
    });
    object.insert("attachments".into(), serde_json::Value::Array(described.collect()));
    let json = serde_json::to_string(&object).map_err(|_| bad())?;
    serde_json::value::RawValue::from_string(json).map_err(|_| bad())
}
