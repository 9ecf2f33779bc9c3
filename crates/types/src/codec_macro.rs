//! A macro that gives a struct of fixed-config fields its canonical encoding: the fields in
//! declaration order, each in its own canonical encoding, nothing else.

/// Implements `Write`, `EncodeSize` and `Read<Cfg = ()>` for a struct from its field list.
macro_rules! codec_fields {
    ($ty:ident { $($field:ident),* $(,)? }) => {
        impl commonware_codec::Write for $ty {
            fn write(&self, _buf: &mut impl bytes::BufMut) {
                $( commonware_codec::Write::write(&self.$field, _buf); )*
            }
        }

        impl commonware_codec::EncodeSize for $ty {
            fn encode_size(&self) -> usize {
                0 $( + commonware_codec::EncodeSize::encode_size(&self.$field) )*
            }
        }

        impl commonware_codec::Read for $ty {
            type Cfg = ();
            fn read_cfg(
                _buf: &mut impl commonware_codec::Buf,
                _: &(),
            ) -> Result<Self, commonware_codec::Error> {
                Ok(Self { $( $field: commonware_codec::ReadExt::read(_buf)?, )* })
            }
        }
    };
}

pub(crate) use codec_fields;
