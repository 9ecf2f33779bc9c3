//! A macro that gives a struct of fixed-config fields its canonical encoding: the fields in
//! declaration order, each in its own canonical encoding, nothing else.

/// Implements `Write`, `EncodeSize` and `Read<Cfg = ()>` for a struct from its field list, e.g.
/// `codec_fields!(Transfer { to, amount })`. Every field type must implement `Read<Cfg = ()>`.
#[macro_export]
macro_rules! codec_fields {
    ($ty:ident { $($field:ident),* $(,)? }) => {
        impl $crate::codec::Write for $ty {
            fn write(&self, _buf: &mut impl $crate::__bytes::BufMut) {
                $( $crate::codec::Write::write(&self.$field, _buf); )*
            }
        }

        impl $crate::codec::EncodeSize for $ty {
            fn encode_size(&self) -> usize {
                0 $( + $crate::codec::EncodeSize::encode_size(&self.$field) )*
            }
        }

        impl $crate::codec::Read for $ty {
            type Cfg = ();
            fn read_cfg(
                _buf: &mut impl $crate::codec::Buf,
                _: &(),
            ) -> Result<Self, $crate::codec::Error> {
                Ok(Self { $( $field: $crate::codec::ReadExt::read(_buf)?, )* })
            }
        }
    };
}
