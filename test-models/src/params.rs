//! Writes TVM's binary params format (`compiled.params`), little-endian:
//! a list magic, a reserved word, the names, then one NDArray record per name.

const LIST_MAGIC: u64 = 0xF7E5_8D4F_0504_9CB7;
const NDARRAY_MAGIC: u64 = 0xDD5E_40F0_96B4_A13F;

/// One named parameter array.
pub(crate) struct Param {
    pub name: &'static str,
    pub shape: Vec<i64>,
    pub data: ParamData,
}

/// Parameter elements.
pub(crate) enum ParamData {
    F32(Vec<f32>),
    I32(Vec<i32>),
}

impl ParamData {
    /// DLPack type code and bits.
    fn dtype(&self) -> (u8, u8) {
        match self {
            Self::F32(_) => (2, 32),
            Self::I32(_) => (0, 32),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        match self {
            Self::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Self::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }
}

pub(crate) fn params_bytes(params: &[Param]) -> Vec<u8> {
    let mut out = Vec::new();
    let u64le = |out: &mut Vec<u8>, v: u64| out.extend_from_slice(&v.to_le_bytes());
    u64le(&mut out, LIST_MAGIC);
    u64le(&mut out, 0);
    u64le(&mut out, params.len() as u64);
    for p in params {
        u64le(&mut out, p.name.len() as u64);
        out.extend_from_slice(p.name.as_bytes());
    }
    u64le(&mut out, params.len() as u64);
    for p in params {
        let bytes = p.data.bytes();
        let (code, bits) = p.data.dtype();
        u64le(&mut out, NDARRAY_MAGIC);
        u64le(&mut out, 0);
        out.extend_from_slice(&1i32.to_le_bytes()); // device type: CPU
        out.extend_from_slice(&0i32.to_le_bytes()); // device id
        out.extend_from_slice(&(p.shape.len() as i32).to_le_bytes());
        out.extend_from_slice(&[code, bits]);
        out.extend_from_slice(&1u16.to_le_bytes()); // lanes
        for d in &p.shape {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.extend_from_slice(&(bytes.len() as i64).to_le_bytes());
        out.extend_from_slice(&bytes);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_of_one_float_array() {
        let bytes = params_bytes(&[Param {
            name: "w",
            shape: vec![2],
            data: ParamData::F32(vec![1.0, 2.0]),
        }]);
        // header 24 + name 9 + count 8 + record header (16 + 12 + 4 + 8 + 8) + data 8
        assert_eq!(bytes.len(), 24 + 9 + 8 + 48 + 8);
        assert_eq!(&bytes[..8], &LIST_MAGIC.to_le_bytes());
        assert_eq!(
            &bytes[bytes.len() - 8..bytes.len() - 4],
            &1.0f32.to_le_bytes()
        );
    }
}
