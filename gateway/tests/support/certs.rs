//! Certificates made by the tests: a CA, servers and devices it issues, expired ones.
//! Written as PEM files, as an operator would have them.

use std::path::{Path, PathBuf};

use rcgen::{
    date_time_ymd, BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};

/// A certificate authority.
pub struct Ca {
    cert: Certificate,
    key: KeyPair,
    pub pem: String,
}

/// A certificate and its key, PEM.
pub struct Issued {
    pub cert: String,
    pub key: String,
}

/// What a certificate is for.
#[derive(Clone, Copy)]
pub enum Use {
    /// A server for 127.0.0.1.
    Server,
    /// A device presenting itself to the gateway.
    Device,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca { pem: cert.pem(), cert, key }
    }

    /// A certificate valid from 2020 to 2100 for `what`.
    pub fn issue(&self, name: &str, what: Use) -> Issued {
        self.issue_until(name, what, (2100, 1, 1))
    }

    /// A certificate valid from 2020 until `(year, month, day)`: one in the past is expired.
    pub fn issue_until(&self, name: &str, what: Use, (y, m, d): (i32, u8, u8)) -> Issued {
        let sans = match what {
            Use::Server => vec!["127.0.0.1".to_owned()],
            Use::Device => vec![],
        };
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.not_before = date_time_ymd(2020, 1, 1);
        params.not_after = date_time_ymd(y, m, d);
        params.extended_key_usages = vec![match what {
            Use::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Use::Device => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap().pem();
        Issued { cert, key: key.serialize_pem() }
    }
}

impl Issued {
    /// Writes `{name}.pem` and `{name}.key` into `dir`; their paths.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let (cert, key) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
        std::fs::write(&cert, &self.cert).unwrap();
        std::fs::write(&key, &self.key).unwrap();
        (cert, key)
    }
}
