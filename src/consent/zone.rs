//! The contact's time zone for quiet hours: the zone set on the contact, else the zone of its
//! phone number's country when that country has only one, else the tenant's zone.

use jiff::tz::TimeZone;

/// Calling codes of countries with a single time zone, longest first where prefixes overlap.
const SINGLE_ZONE_COUNTRIES: &[(&str, &str)] = &[
    ("971", "Asia/Dubai"),
    ("966", "Asia/Riyadh"),
    ("974", "Asia/Qatar"),
    ("973", "Asia/Bahrain"),
    ("968", "Asia/Muscat"),
    ("965", "Asia/Kuwait"),
    ("977", "Asia/Kathmandu"),
    ("880", "Asia/Dhaka"),
    ("852", "Asia/Hong_Kong"),
    ("353", "Europe/Dublin"),
    ("351", "Europe/Lisbon"),
    ("358", "Europe/Helsinki"),
    ("254", "Africa/Nairobi"),
    ("234", "Africa/Lagos"),
    ("94", "Asia/Colombo"),
    ("92", "Asia/Karachi"),
    ("91", "Asia/Kolkata"),
    ("90", "Europe/Istanbul"),
    ("86", "Asia/Shanghai"),
    ("82", "Asia/Seoul"),
    ("81", "Asia/Tokyo"),
    ("66", "Asia/Bangkok"),
    ("65", "Asia/Singapore"),
    ("63", "Asia/Manila"),
    ("60", "Asia/Kuala_Lumpur"),
    ("49", "Europe/Berlin"),
    ("48", "Europe/Warsaw"),
    ("47", "Europe/Oslo"),
    ("46", "Europe/Stockholm"),
    ("45", "Europe/Copenhagen"),
    ("44", "Europe/London"),
    ("43", "Europe/Vienna"),
    ("41", "Europe/Zurich"),
    ("40", "Europe/Bucharest"),
    ("39", "Europe/Rome"),
    ("36", "Europe/Budapest"),
    ("34", "Europe/Madrid"),
    ("33", "Europe/Paris"),
    ("32", "Europe/Brussels"),
    ("31", "Europe/Amsterdam"),
    ("30", "Europe/Athens"),
    ("27", "Africa/Johannesburg"),
    ("20", "Africa/Cairo"),
];

/// The zone for quiet hours of a contact at `address` (a phone number in any of the channels'
/// spellings, or an email address), given its own zone if set and the tenant's fallback.
pub fn contact_zone(own: Option<&str>, address: &str, tenant_zone: &TimeZone) -> TimeZone {
    if let Some(zone) = own.and_then(|name| TimeZone::get(name).ok()) {
        return zone;
    }
    if !address.contains('@') {
        let digits: String = address.chars().filter(char::is_ascii_digit).collect();
        if digits.len() >= 8
            && let Some((_, name)) = SINGLE_ZONE_COUNTRIES
                .iter()
                .find(|(code, _)| digits.starts_with(code))
            && let Ok(zone) = TimeZone::get(name)
        {
            return zone;
        }
    }
    tenant_zone.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_come_from_the_contact_then_the_number_then_the_tenant() {
        let tenant = TimeZone::get("Asia/Kolkata").unwrap();
        let name = |z: TimeZone| z.iana_name().unwrap().to_owned();
        assert_eq!(
            name(contact_zone(
                Some("America/Chicago"),
                "919800000001",
                &tenant
            )),
            "America/Chicago"
        );
        assert_eq!(
            name(contact_zone(None, "447700900123", &tenant)),
            "Europe/London"
        );
        assert_eq!(
            name(contact_zone(None, "whatsapp:+4915123456789", &tenant)),
            "Europe/Berlin"
        );
        // +1 spans several zones: the tenant's zone applies.
        assert_eq!(
            name(contact_zone(None, "+14155550100", &tenant)),
            "Asia/Kolkata"
        );
        assert_eq!(
            name(contact_zone(None, "lead@example.com", &tenant)),
            "Asia/Kolkata"
        );
        assert_eq!(
            name(contact_zone(Some("Not/AZone"), "447700900123", &tenant)),
            "Europe/London"
        );
    }
}
