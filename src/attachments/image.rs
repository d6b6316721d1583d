//! A file's type from its first bytes (the `infer` crate's magic numbers), and an image's size and
//! thumbnail (the `image` crate), decoded within limits so that a decompression bomb is refused
//! before its pixels are allocated.
//!
//! Owns: which types count as images and the decoding limits. Must not: trust the client's type.

use std::io::Cursor;

use image::{ImageFormat, ImageReader, Limits};

/// How many leading bytes the type is told from.
pub const SNIFF: usize = 8192;
/// The longest side of a thumbnail.
pub const THUMBNAIL: u32 = 320;
/// The largest image decoded (either side), and the most memory its decoding may take.
const MAX_SIDE: u32 = 10_000;
const MAX_ALLOC: u64 = 256 * 1024 * 1024;

const IMAGES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

/// The type of a file that starts with `head`: what the bytes say, else plain text for valid
/// UTF-8 without NUL, else `application/octet-stream`.
pub fn sniff(head: &[u8]) -> String {
    if let Some(kind) = infer::get(head) {
        return kind.mime_type().to_owned();
    }
    let text = match std::str::from_utf8(head) {
        Ok(text) => Some(text),
        // The head may cut a character in two.
        Err(err) if err.error_len().is_none() => {
            std::str::from_utf8(&head[..err.valid_up_to()]).ok()
        }
        Err(_) => None,
    };
    match text {
        Some(text) if !text.contains('\0') && looks_like_html(text) => "text/html".to_owned(),
        Some(text) if !text.contains('\0') => "text/plain".to_owned(),
        _ => "application/octet-stream".to_owned(),
    }
}

fn looks_like_html(text: &str) -> bool {
    let start = text.trim_start().get(..15).unwrap_or(text.trim_start()).to_ascii_lowercase();
    ["<!doctype html", "<html", "<script", "<svg", "<?xml"].iter().any(|tag| start.starts_with(tag))
}

/// Whether a file that starts with `head` is one of the images shown inline (PNG, JPEG, GIF, WebP).
pub fn is_image(head: &[u8]) -> bool {
    IMAGES.contains(&sniff(head).as_str())
}

/// Whether `content_type` is served inline (the images); everything else is a download.
pub fn inline(content_type: &str) -> bool {
    IMAGES.contains(&content_type)
}

/// An image's width, height and PNG thumbnail (at most [`THUMBNAIL`] a side); a refusal for one
/// that does not decode, or is too large to.
pub fn thumbnail(bytes: &[u8]) -> Result<(i64, i64, Vec<u8>), String> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|err| format!("not a valid image: {err}"))?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    let image = reader.decode().map_err(|err| match err {
        image::ImageError::Limits(_) => {
            format!("an image larger than {MAX_SIDE} × {MAX_SIDE} pixels is not taken")
        }
        err => format!("not a valid image: {err}"),
    })?;
    let (width, height) = (image.width(), image.height());
    let small = image.thumbnail(THUMBNAIL, THUMBNAIL);
    let mut png = Vec::new();
    small
        .write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
        .map_err(|err| format!("the thumbnail could not be made: {err}"))?;
    Ok((i64::from(width), i64::from(height), png))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_type_comes_from_the_bytes() {
        let png = [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13];
        assert_eq!(sniff(&png), "image/png");
        assert!(is_image(&png));
        assert_eq!(sniff(b"<!DOCTYPE html><p>hi"), "text/html");
        assert_eq!(sniff(b"  <svg xmlns=..."), "text/html");
        assert_eq!(sniff(b"just words"), "text/plain");
        assert_eq!(sniff(&[0, 1, 2, 255]), "application/octet-stream");
        assert_eq!(sniff(b""), "text/plain");
        assert!(inline("image/webp") && !inline("text/html"));
    }

    #[test]
    fn a_corrupt_image_is_refused_and_a_small_one_thumbnailed() {
        assert!(thumbnail(b"\x89PNG\r\n\x1a\nnot really").is_err());
        let mut png = Vec::new();
        image::RgbImage::new(640, 480)
            .write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
            .unwrap();
        let (w, h, small) = thumbnail(&png).unwrap();
        assert_eq!((w, h), (640, 480));
        let small = image::load_from_memory(&small).unwrap();
        assert_eq!((small.width(), small.height()), (320, 240));
    }
}
