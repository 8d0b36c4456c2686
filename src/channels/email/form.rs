//! Provider form posts (Mailgun, SendGrid) as named text fields plus file parts. Both
//! `multipart/form-data` and `application/x-www-form-urlencoded` are read; a file part is kept
//! only as attachment metadata (name, type, size).

use std::convert::Infallible;

use bytes::Bytes;

use super::inbound::Attachment;

#[derive(Debug, Default, Clone)]
pub struct FormFields {
    pub fields: Vec<(String, String)>,
    pub files: Vec<Attachment>,
}

impl FormFields {
    /// The first field called `name` (exact case), if any.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first of `names` that is present and not blank.
    pub fn first(&self, names: &[&str]) -> Option<&str> {
        names
            .iter()
            .find_map(|n| self.get(n).filter(|v| !v.trim().is_empty()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FormError {
    #[error("the body is neither multipart/form-data nor a urlencoded form")]
    UnsupportedType,
    #[error("the multipart body is malformed: {0}")]
    Multipart(String),
}

/// Reads a form body according to its `Content-Type`.
pub async fn read_form(content_type: Option<&str>, body: Bytes) -> Result<FormFields, FormError> {
    let content_type = content_type.unwrap_or("");
    if content_type.starts_with("application/x-www-form-urlencoded") {
        return Ok(FormFields {
            fields: form_urlencoded::parse(&body).into_owned().collect(),
            files: Vec::new(),
        });
    }
    if !content_type.starts_with("multipart/form-data") {
        return Err(FormError::UnsupportedType);
    }
    let boundary =
        multer::parse_boundary(content_type).map_err(|e| FormError::Multipart(e.to_string()))?;
    let stream = futures::stream::once(async move { Ok::<_, Infallible>(body) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    let mut form = FormFields::default();
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| FormError::Multipart(e.to_string()))?
    {
        let name = field.name().unwrap_or_default().to_owned();
        let file_name = field.file_name().map(str::to_owned);
        let content_type = field.content_type().map(|m| m.essence_str().to_owned());
        let data = field
            .bytes()
            .await
            .map_err(|e| FormError::Multipart(e.to_string()))?;
        match file_name {
            Some(file_name) => form.files.push(Attachment {
                name: Some(file_name),
                content_type,
                size: data.len(),
            }),
            None => form
                .fields
                .push((name, String::from_utf8_lossy(&data).into_owned())),
        }
    }
    Ok(form)
}
