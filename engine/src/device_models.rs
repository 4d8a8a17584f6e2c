//! The device models the registry knows by SKU (its `devices.model` column holds a
//! microinverter's or gateway's SKU, a meter's part number), with the part number and the
//! product name installers read on a label (S4). The fleet generator's catalogue
//! (`sunfleet-fixtures`, `world/devices.rs`) is checked against this one by a test there.

/// One product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceModel {
    pub sku: &'static str,
    pub part_number: &'static str,
    pub name: &'static str,
}

pub const DEVICE_MODELS: &[DeviceModel] = &[
    // Microinverters: one SKU for split-phase North American grids, one for 230 V grids.
    model("IQ6PLUS-72-2-US", "800-00107-r02", "IQ6+"),
    model("IQ6PLUS-72-2-INT", "800-00107-r02", "IQ6+"),
    model("IQ7PLUS-72-2-US", "800-00625-r02", "IQ7+"),
    model("IQ7PLUS-72-2-INT", "800-00625-r02", "IQ7+"),
    model("IQ7A-72-2-US", "800-00633-r02", "IQ7A"),
    model("IQ7A-72-2-INT", "800-00633-r02", "IQ7A"),
    model("IQ8PLUS-72-2-US", "800-01127-r02", "IQ8+"),
    model("IQ8PLUS-72-M-INT", "800-01127-r02", "IQ8+"),
    model("IQ8M-72-2-US", "800-01133-r02", "IQ8M"),
    model("IQ8M-72-M-INT", "800-01133-r02", "IQ8M"),
    model("IQ8A-72-2-US", "800-01135-r02", "IQ8A"),
    model("IQ8A-72-M-INT", "800-01135-r02", "IQ8A"),
    model("IQ8H-240-72-2-US", "800-01141-r02", "IQ8H"),
    model("IQ8H-240-72-M-INT", "800-01141-r02", "IQ8H"),
    // Gateways.
    model("ENV-S-WM-230", "800-00555-r03", "Envoy-S Metered"),
    model("ENV-IQ-AM1-240", "800-00654-r08", "IQ Gateway Standard"),
    model("X-IQ-AM1-240-4", "800-00664-r05", "IQ Combiner 4"),
    // Meters (the registry holds their part number) and batteries.
    model(
        "CT-200-SPLIT",
        "CT-200-SPLIT",
        "Current transformer, 200 A split-core",
    ),
    model("IQBATTERY-3T-1P-NA", "IQBATTERY-3T-1P-NA", "IQ Battery 3T"),
];

const fn model(sku: &'static str, part_number: &'static str, name: &'static str) -> DeviceModel {
    DeviceModel {
        sku,
        part_number,
        name,
    }
}

/// The model with this SKU (or a meter's part number), if the catalogue has it.
pub fn device_model(sku: &str) -> Option<&'static DeviceModel> {
    DEVICE_MODELS.iter().find(|m| m.sku == sku)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sku_is_listed_once() {
        for (i, m) in DEVICE_MODELS.iter().enumerate() {
            assert!(
                DEVICE_MODELS[i + 1..]
                    .iter()
                    .all(|other| other.sku != m.sku),
                "{} twice",
                m.sku
            );
        }
        assert_eq!(
            device_model("IQ8PLUS-72-M-INT").map(|m| m.part_number),
            Some("800-01127-r02")
        );
        assert_eq!(device_model("unknown"), None);
    }
}
