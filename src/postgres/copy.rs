//! Rows in PostgreSQL's binary `COPY` format, for `COPY ... FROM STDIN (FORMAT binary)`.
//!
//! Only the framing is written here (a header, a field count per row, a length before each
//! field, a trailer; see "Binary Format" on PostgreSQL's COPY page). Every field is encoded by
//! sqlx's own binary encoders, the same ones that bind statement parameters, so a value goes
//! over the wire exactly as it would as a parameter and the server parses no text and no arrays.

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, Postgres};
use sqlx::Encode;

/// The 11-byte signature, then flags (no OIDs) and the length of the header extension (none).
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// A field count of -1 ends the data.
const TRAILER: [u8; 2] = (-1i16).to_be_bytes();

/// Binary COPY data being built, row by row, and handed out in chunks so that the server can
/// parse the first rows while later ones are still being encoded.
pub(crate) struct CopyRows {
    buffer: PgArgumentBuffer,
    fields_per_row: i16,
    fields_in_row: i16,
    rows: usize,
}

impl CopyRows {
    /// Starts the data, for rows of `fields_per_row` fields.
    pub(crate) fn new(fields_per_row: i16) -> Self {
        let mut buffer = PgArgumentBuffer::default();
        buffer.extend_from_slice(HEADER);
        Self {
            buffer,
            fields_per_row,
            fields_in_row: fields_per_row,
            rows: 0,
        }
    }

    /// Starts the next row. The previous row must be complete.
    pub(crate) fn row(&mut self) -> Result<(), BoxDynError> {
        self.check_row_complete()?;
        self.buffer
            .extend_from_slice(&self.fields_per_row.to_be_bytes());
        self.fields_in_row = 0;
        self.rows += 1;
        Ok(())
    }

    /// Appends the row's next field; `None` (through `Option`'s encoder) is SQL NULL.
    pub(crate) fn field<'q, T: Encode<'q, Postgres>>(
        &mut self,
        value: &T,
    ) -> Result<(), BoxDynError> {
        if self.fields_in_row >= self.fields_per_row {
            return Err(format!("a row has only {} fields", self.fields_per_row).into());
        }
        let start = self.buffer.len();
        self.buffer.extend_from_slice(&[0; 4]);
        let length = match value.encode_by_ref(&mut self.buffer)? {
            IsNull::Yes => {
                self.buffer.truncate(start + 4);
                -1
            }
            IsNull::No => i32::try_from(self.buffer.len() - start - 4)
                .map_err(|_| "a field is larger than 2 GiB")?,
        };
        self.buffer[start..start + 4].copy_from_slice(&length.to_be_bytes());
        self.fields_in_row += 1;
        Ok(())
    }

    /// Rows started so far.
    #[cfg(test)]
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// Bytes encoded and not yet taken.
    pub(crate) fn pending(&self) -> usize {
        self.buffer.len()
    }

    /// Takes what has been encoded so far (complete fields only; rows may span chunks, which
    /// COPY allows).
    pub(crate) fn take_chunk(&mut self) -> Vec<u8> {
        std::mem::take(&mut *self.buffer)
    }

    /// Ends the data: the last chunk, with the trailer.
    pub(crate) fn finish(mut self) -> Result<Vec<u8>, BoxDynError> {
        self.check_row_complete()?;
        self.buffer.extend_from_slice(&TRAILER);
        Ok(std::mem::take(&mut *self.buffer))
    }

    fn check_row_complete(&self) -> Result<(), BoxDynError> {
        if self.rows > 0 && self.fields_in_row != self.fields_per_row {
            return Err(format!(
                "a row has {} of its {} fields",
                self.fields_in_row, self.fields_per_row
            )
            .into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_framed_as_postgres_binary_copy() {
        let mut rows = CopyRows::new(3);
        rows.row().unwrap();
        rows.field(&"SO-1").unwrap();
        rows.field(&7i32).unwrap();
        rows.field(&None::<i64>).unwrap();
        let data = rows.finish().unwrap();
        let mut expected = b"PGCOPY\n\xff\r\n\0".to_vec();
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]); // flags, extension length
        expected.extend_from_slice(&[0, 3]); // three fields
        expected.extend_from_slice(&[0, 0, 0, 4]);
        expected.extend_from_slice(b"SO-1");
        expected.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 7]);
        expected.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]); // NULL
        expected.extend_from_slice(&[0xff, 0xff]); // trailer
        assert_eq!(data, expected);
    }

    #[test]
    fn chunks_concatenate_to_the_whole_data() {
        let mut whole = CopyRows::new(1);
        let mut chunked = CopyRows::new(1);
        let mut chunks = Vec::new();
        for i in 0..3i32 {
            whole.row().unwrap();
            whole.field(&i).unwrap();
            chunked.row().unwrap();
            chunked.field(&i).unwrap();
            chunks.extend(chunked.take_chunk());
        }
        assert_eq!(chunked.rows(), 3);
        chunks.extend(chunked.finish().unwrap());
        assert_eq!(chunks, whole.finish().unwrap());
    }

    #[test]
    fn incomplete_or_overfull_rows_are_refused() {
        let mut rows = CopyRows::new(2);
        rows.row().unwrap();
        rows.field(&1i32).unwrap();
        assert_eq!(
            rows.row().unwrap_err().to_string(),
            "a row has 1 of its 2 fields"
        );
        rows.field(&2i32).unwrap();
        assert_eq!(
            rows.field(&3i32).unwrap_err().to_string(),
            "a row has only 2 fields"
        );
    }
}
