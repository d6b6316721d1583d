//! The REST endpoints of attachments: `POST /rooms/{room}/attachments` streams an upload into the
//! store; `GET /attachments/{id}` (and `/thumbnail`) streams it back, safely.
//!
//! Owns: the upload's body (read frame by frame, each within `--handshake-timeout`, never
//! collected) and the
//! download's headers: `nosniff`, a `sandbox` policy, `attachment` for all but the images, `ETag`
//! and `Range`. The rules are the attachment service's ([`crate::attachments`]). Must not: decide.

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use serde_json::json;

use super::caller::{query_param, Caller};
use super::{json, refusal, App, Body};
use crate::attachments::{self, Refused, Writer};
use crate::protocol::ErrorCode;
use crate::store::attachments::CHUNK;

fn refused(refused: Refused) -> Response<Body> {
    refusal(refused.code, &refused.message)
}

/// `POST /rooms/{room}/attachments`: the body is the file; its name in `?name=` (or the
/// `X-File-Name` header, percent-encoded). `201 {"id","name","size","type","width","height"}`.
pub async fn upload(
    app: &App,
    request: Request<Incoming>,
    room: &str,
    caller: &Caller,
) -> Response<Body> {
    let Some(user) = caller.user.clone() else {
        return refused(Refused::new(ErrorCode::BadRequest, super::caller::UNNAMED));
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let name = query_param(request.uri().query(), "name")
        .or_else(|| {
            let header = request.headers().get("x-file-name")?.to_str().ok()?;
            Some(percent_encoding::percent_decode_str(header).decode_utf8_lossy().into_owned())
        })
        .unwrap_or_else(|| "file".to_owned());
    if let Err(why) = attachments::may_upload(&app.hub, room, &user, declared).await {
        return refused(why);
    }
    let mut writer = match Writer::begin(&app.hub, room, &user, &name).await {
        Ok(writer) => writer,
        Err(why) => return refused(why),
    };
    let idle = app.hub.settings().handshake_timeout;
    match receive(&mut writer, request.into_body(), idle).await {
        Ok(()) => {}
        Err(why) => {
            writer.abort().await;
            return refused(why);
        }
    }
    match writer.finish().await {
        Ok(stored) => {
            tracing::info!(target: "audit", event = "upload", %user, room, id = stored.id, size = stored.size, content_type = stored.content_type);
            let body = json!({
                "id": stored.id,
                "name": attachments::clean_name(&name),
                "size": stored.size,
                "type": stored.content_type,
                "width": stored.width,
                "height": stored.height,
            });
            json(StatusCode::CREATED, &body)
        }
        Err(why) => refused(why),
    }
}

/// Reads the body into the writer, frame by frame, each within `idle` (`--handshake-timeout`): a
/// client that stops sending is cut off.
async fn receive(
    writer: &mut Writer<'_>,
    mut body: Incoming,
    idle: std::time::Duration,
) -> Result<(), Refused> {
    loop {
        let next = tokio::time::timeout(idle, body.frame()).await.map_err(|_| {
            let message =
                format!("the upload stalled: no bytes for {}", humantime::format_duration(idle));
            Refused::new(ErrorCode::BadRequest, message)
        })?;
        let Some(frame) = next else { return Ok(()) };
        let frame = frame.map_err(|err| {
            Refused::new(ErrorCode::BadRequest, format!("the upload was cut: {err}"))
        })?;
        if let Ok(data) = frame.into_data() {
            writer.push(&data).await?;
        }
    }
}

/// The byte range a `Range` header asks for, within `size`: `Ok(None)` for the whole file; `Err`
/// for one that cannot be served (416).
fn range(header: Option<&str>, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = header.and_then(|h| h.strip_prefix("bytes=")) else { return Ok(None) };
    let (start, end) = spec.split_once('-').ok_or(())?;
    let (start, end) = match (start.trim(), end.trim()) {
        ("", suffix) => {
            let suffix: u64 = suffix.parse().map_err(|_| ())?;
            (size.saturating_sub(suffix), size.checked_sub(1).ok_or(())?)
        }
        (start, "") => (start.parse().map_err(|_| ())?, size.checked_sub(1).ok_or(())?),
        (start, end) => {
            let end: u64 = end.parse().map_err(|_| ())?;
            (start.parse().map_err(|_| ())?, end.min(size.saturating_sub(1)))
        }
    };
    if start > end || start >= size {
        return Err(());
    }
    Ok(Some((start, end)))
}

/// `GET /attachments/{id}` or `/attachments/{id}/thumbnail`, for whoever may read its room.
pub async fn download(
    app: &App,
    request: &Request<Incoming>,
    id: &str,
    thumbnail: bool,
    caller: &Caller,
) -> Response<Body> {
    let meta = match attachments::readable(&app.hub, id, caller.user.as_deref(), caller.admin).await
    {
        Ok(meta) => meta,
        Err(why) => return refused(why),
    };
    let etag = format!("\"{}{}\"", meta.id, if thumbnail { "-t" } else { "" });
    let mut response = Response::builder()
        .header(header::ETAG, &etag)
        .header(header::CACHE_CONTROL, "private, max-age=31536000, immutable")
        .header("x-content-type-options", "nosniff")
        .header(header::CONTENT_SECURITY_POLICY, "sandbox; default-src 'none'");
    let matches = request.headers().get(header::IF_NONE_MATCH).is_some_and(|v| v == etag.as_str());
    if matches {
        return response.status(StatusCode::NOT_MODIFIED).body(super::empty()).expect("valid");
    }
    if thumbnail {
        return match attachments::thumbnail(&app.hub, id).await {
            Ok(Some(png)) => response
                .header(header::CONTENT_TYPE, "image/png")
                .body(super::full(png))
                .expect("valid"),
            Ok(None) => refused(Refused::new(ErrorCode::NotFound, "this file has no thumbnail")),
            Err(why) => refused(why),
        };
    }
    let disposition = if attachments::inline(&meta.content_type) { "inline" } else { "attachment" };
    let name =
        percent_encoding::utf8_percent_encode(&meta.name, percent_encoding::NON_ALPHANUMERIC);
    response = response
        .header(header::CONTENT_TYPE, &meta.content_type)
        .header(header::CONTENT_DISPOSITION, format!("{disposition}; filename*=UTF-8''{name}"))
        .header(header::ACCEPT_RANGES, "bytes");
    let size = u64::try_from(meta.size).unwrap_or(0);
    let asked = request.headers().get(header::RANGE).and_then(|v| v.to_str().ok());
    let (start, end, status) = match range(asked, size) {
        Ok(None) => (0, size.saturating_sub(1), StatusCode::OK),
        Ok(Some((start, end))) => {
            response =
                response.header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{size}"));
            (start, end, StatusCode::PARTIAL_CONTENT)
        }
        Err(()) => {
            let unsatisfiable = HeaderValue::from_str(&format!("bytes */{size}")).expect("ascii");
            return response
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, unsatisfiable)
                .body(super::empty())
                .expect("valid");
        }
    };
    let length = if size == 0 { 0 } else { end - start + 1 };
    let body = if length == 0 { super::empty() } else { stream(app, meta.id, start, end) };
    response.status(status).header(header::CONTENT_LENGTH, length).body(body).expect("valid")
}

/// The bytes `start..=end` of file `id`, read from the store a chunk at a time as the client
/// takes them.
fn stream(app: &App, id: String, start: u64, end: u64) -> Body {
    let chunk = CHUNK as u64;
    let hub = app.hub.clone();
    let (first, last) = (start / chunk, end / chunk);
    let frames = futures_util::stream::iter(first..=last).then(move |n| {
        let (hub, id) = (hub.clone(), id.clone());
        async move {
            let n_i = i64::try_from(n).unwrap_or(i64::MAX);
            let mut data = attachments::chunks(&hub, &id, n_i, n_i)
                .await
                .map_err(|why| std::io::Error::other(why.message))?
                .pop()
                .ok_or_else(|| std::io::Error::other("a chunk is missing"))?;
            let from = if n == first { (start - n * chunk) as usize } else { 0 };
            let to = if n == last { (end - n * chunk) as usize + 1 } else { data.len() };
            data.truncate(to.min(data.len()));
            Ok(Frame::data(Bytes::from(data).slice(from.min(to)..)))
        }
    });
    StreamBody::new(frames).boxed_unsync()
}

#[cfg(test)]
mod tests {
    use super::range;

    #[test]
    fn ranges_are_read_within_the_file() {
        assert_eq!(range(None, 10), Ok(None));
        assert_eq!(range(Some("bytes=0-4"), 10), Ok(Some((0, 4))));
        assert_eq!(range(Some("bytes=5-"), 10), Ok(Some((5, 9))));
        assert_eq!(range(Some("bytes=-3"), 10), Ok(Some((7, 9))));
        assert_eq!(range(Some("bytes=8-100"), 10), Ok(Some((8, 9))));
        assert_eq!(range(Some("bytes=10-"), 10), Err(()));
        assert_eq!(range(Some("bytes=4-2"), 10), Err(()));
        assert_eq!(range(Some("bytes=x-"), 10), Err(()));
        assert_eq!(range(Some("bytes=0-0"), 0), Err(()));
    }
}
