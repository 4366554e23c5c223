//! How the wallet names its keys to Core's RPCs: BIP32 key paths
//! (`hdkeypath`) and output descriptors with key origin, single-key
//! (`desc`) and ranged (`parent_desc`).

use bitcoin::bip32::Xpub;

use crate::script::descriptor::with_checksum;
use crate::script::verify::secp;
use crate::wallet::hd::{AddressType, KeyInfo, Wallet, COIN_TYPE_TEST};

impl Wallet {
    /// BIP32 path of a key, Core style (`m/84h/1h/0h/0/3`).
    pub fn hd_key_path(&self, k: &KeyInfo) -> String {
        format!(
            "m/{}h/{}h/0h/{}/{}",
            k.kind.purpose(),
            COIN_TYPE_TEST,
            u32::from(k.change),
            k.index
        )
    }

    /// The key's single-key descriptor with origin, e.g. `wpkh([fp/84h/1h/0h/0/0]02...)#...`.
    pub fn descriptor(&self, k: &KeyInfo) -> String {
        let origin = format!(
            "[{}/{}h/{}h/0h/{}/{}]",
            self.fingerprint,
            k.kind.purpose(),
            COIN_TYPE_TEST,
            u32::from(k.change),
            k.index
        );
        let body = match k.kind {
            AddressType::Bech32 => format!("wpkh({origin}{})", k.pubkey),
            AddressType::Bech32m => format!("tr({origin}{})", k.pubkey.x_only_public_key().0),
        };
        with_checksum(&body)
    }

    /// The ranged descriptor the key was derived from (`parent_desc`).
    pub fn parent_descriptor(&self, kind: AddressType, change: bool) -> String {
        let xpub = Xpub::from_priv(secp(), &self.accounts[kind as usize]);
        let origin = format!(
            "[{}/{}h/{}h/0h]",
            self.fingerprint,
            kind.purpose(),
            COIN_TYPE_TEST
        );
        let f = match kind {
            AddressType::Bech32 => "wpkh",
            AddressType::Bech32m => "tr",
        };
        with_checksum(&format!("{f}({origin}{xpub}/{}/*)", u32::from(change)))
    }
}

#[cfg(test)]
mod tests {
    use crate::wallet::hd::{AddressType, Wallet};

    #[test]
    fn key_paths_and_descriptors_name_the_derivation() {
        let mut w = Wallet::new("w", [7u8; 32], 1).unwrap();
        let a = w.new_address(AddressType::Bech32, false, "x").unwrap();
        let k = w.key(&a.script_pubkey()).unwrap();
        assert_eq!(w.hd_key_path(k), "m/84h/1h/0h/0/0");
        assert!(w.descriptor(k).starts_with("wpkh(["));
    }
}
