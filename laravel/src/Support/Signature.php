<?php

namespace Resonance\Laravel\Support;

/**
 * The two signatures of the Resonance contract:
 *  - X-Resonance-Signature / X-Pusher-Signature: hex HMAC-SHA256 of the exact body with the app secret;
 *  - Pusher-style signed API requests (auth_key, auth_timestamp, auth_version, body_md5, auth_signature).
 */
class Signature
{
    /** hex HMAC-SHA256 of $body with $secret. */
    public static function body(string $secret, string $body): string
    {
        return hash_hmac('sha256', $body, $secret);
    }

    /** Constant-time check of a hex body signature; false for a missing or empty secret. */
    public static function verifyBody(?string $secret, string $body, ?string $signature): bool
    {
        if ($secret === null || $secret === '' || $signature === null || $signature === '') {
            return false;
        }

        return hash_equals(self::body($secret, $body), strtolower(trim($signature)));
    }

    /**
     * The query string of a signed API request: "POST\n<path>\n<sorted query>" signed with the
     * secret. $path is the path exactly as sent (percent-encoded segments included).
     */
    public static function apiQuery(string $key, string $secret, string $method, string $path, string $body, ?int $timestamp = null): string
    {
        $params = [
            'auth_key' => $key,
            'auth_timestamp' => (string) ($timestamp === null ? time() : $timestamp),
            'auth_version' => '1.0',
        ];
        if ($body !== '') {
            $params['body_md5'] = md5($body);
        }
        ksort($params);
        $pairs = [];
        foreach ($params as $k => $v) {
            $pairs[] = $k.'='.$v;
        }
        $toSign = strtoupper($method)."\n".$path."\n".implode('&', $pairs);
        $params['auth_signature'] = hash_hmac('sha256', $toSign, $secret);

        return http_build_query($params, '', '&', PHP_QUERY_RFC3986);
    }
}
