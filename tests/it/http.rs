//! A small HTTP/1.0 client for the portal tests: one request per connection, cookies kept
//! by hand, no dependencies.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A browser-like client of one server: it remembers the cookies it is given.
pub struct Client {
    pub address: String,
    pub cookies: BTreeMap<String, String>,
}

impl Client {
    pub fn new(address: &str) -> Self {
        Self {
            address: address.to_owned(),
            cookies: BTreeMap::new(),
        }
    }

    pub fn get(&mut self, path: &str) -> Response {
        self.request("GET", path, &[], None)
    }

    pub fn post_form(&mut self, path: &str, fields: &[(&str, &str)]) -> Response {
        let body = url_encode(fields);
        self.request(
            "POST",
            path,
            &[("Content-Type", "application/x-www-form-urlencoded")],
            Some(&body),
        )
    }

    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Response {
        let mut stream = TcpStream::connect(&self.address).expect("the portal accepts");
        let mut request = format!("{method} {path} HTTP/1.0\r\nHost: {}\r\n", self.address);
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            request.push_str(&format!("Cookie: {}\r\n", jar.join("; ")));
        }
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        let body = body.unwrap_or("");
        request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        stream.write_all(request.as_bytes()).unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).unwrap();
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .expect("a status line");
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        for (name, value) in &headers {
            if name.eq_ignore_ascii_case("set-cookie") {
                let pair = value.split(';').next().unwrap_or("");
                if let Some((k, v)) = pair.split_once('=') {
                    if v.is_empty() || value.contains("Max-Age=0") {
                        self.cookies.remove(k);
                    } else {
                        self.cookies.insert(k.to_owned(), v.to_owned());
                    }
                }
            }
        }
        Response {
            status,
            headers,
            body: body.to_owned(),
        }
    }

    /// Signs in through the form as a browser would; returns the answer to the POST.
    pub fn sign_in(&mut self, email: &str, password: &str) -> Response {
        let form = self.get("/signin");
        assert_eq!(form.status, 200, "{}", form.body);
        let token = hidden_field(&form.body, "form_token").expect("a form token");
        self.post_form(
            "/signin",
            &[
                ("email", email),
                ("password", password),
                ("form_token", &token),
                ("next", "/"),
            ],
        )
    }
}

/// The value of a hidden form field in a page.
pub fn hidden_field(page: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker)? + marker.len();
    let end = page[start..].find('"')? + start;
    Some(page[start..end].to_owned())
}

fn url_encode(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A signed-in client with the CSRF token its forms and SQL need.
pub struct User {
    pub client: Client,
    pub csrf: String,
}

impl User {
    pub fn sign_in(portal: &str, email: &str) -> Self {
        let mut client = Client::new(portal);
        assert_eq!(
            client.sign_in(email, crate::demo::PASSWORD).status,
            303,
            "{email}"
        );
        let csrf = hidden_field(&client.get("/account").body, "csrf_token").unwrap();
        Self { client, csrf }
    }

    pub fn get(&mut self, path: &str) -> crate::http::Response {
        self.client.get(path)
    }

    pub fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> crate::http::Response {
        let mut with_token = vec![("csrf_token", self.csrf.as_str())];
        with_token.extend_from_slice(fields);
        self.client.post_form(path, &with_token)
    }

    /// Rows of a query in the user's scope, as JSON objects.
    pub fn sql(&mut self, text: &str) -> Vec<serde_json::Value> {
        let answer = self.client.request(
            "POST",
            "/api/sql?format=json",
            &[("X-CSRF-Token", &self.csrf), ("Content-Type", "text/plain")],
            Some(text),
        );
        assert_eq!(answer.status, 200, "{text}: {}", answer.body);
        serde_json::from_str(&answer.body).unwrap()
    }

    pub fn sql_count(&mut self, text: &str) -> u64 {
        self.sql(text)[0]["n"].as_u64().unwrap()
    }
}
