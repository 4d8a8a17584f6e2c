//! The grid profiles a gateway can apply to its microinverters (C3, F5 "Grid Profiles"):
//! the interconnection rule set of a country or region (voltage and frequency limits,
//! ride-through, reconnection). A grid-profile task names one of these; the gateway
//! reports it applied, and the registry keeps it per gateway.

/// One grid profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GridProfile {
    /// The name tasks and the portal use.
    pub name: &'static str,
    /// Where it applies.
    pub region: &'static str,
    /// Nominal grid voltage and frequency.
    pub grid: &'static str,
    /// ISO 3166-1 alpha-2 codes of the countries it is the default for.
    pub countries: &'static [&'static str],
}

pub const GRID_PROFILES: &[GridProfile] = &[
    GridProfile {
        name: "IEEE 1547-2018",
        region: "United States",
        grid: "240 V / 60 Hz",
        countries: &["US"],
    },
    GridProfile {
        name: "CSA C22.3 No. 9",
        region: "Canada",
        grid: "240 V / 60 Hz",
        countries: &["CA"],
    },
    GridProfile {
        name: "VFR 2019",
        region: "France",
        grid: "230 V / 50 Hz",
        countries: &["FR", "RE"],
    },
    GridProfile {
        name: "VDE-AR-N 4105:2018",
        region: "Germany",
        grid: "230 V / 50 Hz",
        countries: &["DE"],
    },
    GridProfile {
        name: "EN 50549-1:2019",
        region: "Europe",
        grid: "230 V / 50 Hz",
        countries: &["AT", "BE", "CH", "ES", "IE", "IT", "NL", "PT"],
    },
    GridProfile {
        name: "G98/G99",
        region: "Great Britain",
        grid: "230 V / 50 Hz",
        countries: &["GB"],
    },
    GridProfile {
        name: "AS/NZS 4777.2:2020",
        region: "Australia and New Zealand",
        grid: "230 V / 50 Hz",
        countries: &["AU", "NZ"],
    },
    GridProfile {
        name: "ABNT NBR 16149",
        region: "Brazil",
        grid: "220 V / 60 Hz",
        countries: &["BR"],
    },
    GridProfile {
        name: "NRS 097-2-1",
        region: "South Africa",
        grid: "230 V / 50 Hz",
        countries: &["ZA"],
    },
    GridProfile {
        name: "JEAC 9701",
        region: "Japan",
        grid: "202 V / 50 or 60 Hz",
        countries: &["JP"],
    },
    GridProfile {
        name: "IEC 61727 (50 Hz)",
        region: "Other 50 Hz grids",
        grid: "230 V / 50 Hz",
        countries: &["IN", "CL"],
    },
    GridProfile {
        name: "IEC 61727 (60 Hz)",
        region: "Other 60 Hz grids",
        grid: "127–240 V / 60 Hz",
        countries: &["MX", "PH"],
    },
];

/// The profile with this name.
pub fn grid_profile(name: &str) -> Option<&'static GridProfile> {
    GRID_PROFILES.iter().find(|p| p.name == name)
}

/// The default profile of a country (ISO 3166-1 alpha-2).
pub fn default_grid_profile(country: &str) -> Option<&'static GridProfile> {
    GRID_PROFILES
        .iter()
        .find(|p| p.countries.iter().any(|c| c.eq_ignore_ascii_case(country)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_countries_have_one_default() {
        for (i, profile) in GRID_PROFILES.iter().enumerate() {
            assert!(
                GRID_PROFILES[i + 1..]
                    .iter()
                    .all(|p| p.name != profile.name)
            );
            for country in profile.countries {
                assert_eq!(
                    default_grid_profile(country).map(|p| p.name),
                    Some(profile.name)
                );
            }
        }
        assert_eq!(grid_profile("VFR 2019").map(|p| p.region), Some("France"));
        assert!(grid_profile("Mars 1").is_none());
    }
}
