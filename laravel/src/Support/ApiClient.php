<?php

namespace Resonance\Laravel\Support;

/**
 * Client of Resonance's signed HTTP API for sockets (send, join, leave, close, actions,
 * room broadcast, user send). Plain PHP streams: no HTTP library required.
 */
class ApiClient
{
    private $baseUrl;
    private $appId;
    private $key;
    private $secret;
    private $timeout;

    public function __construct(string $baseUrl, string $appId, string $key, string $secret, float $timeout = 5.0)
    {
        $this->baseUrl = rtrim($baseUrl, '/');
        $this->appId = $appId;
        $this->key = $key;
        $this->secret = $secret;
        $this->timeout = $timeout;
    }

    /** POST /apps/{app}/sockets/{socket}/{op} */
    public function socket(string $socketId, string $op, array $body): array
    {
        return $this->post('/sockets/'.rawurlencode($socketId).'/'.$op, $body);
    }

    /** POST /apps/{app}/rooms/{room}/broadcast */
    public function broadcast(string $room, $data, array $except = []): array
    {
        $body = ['data' => $data];
        if ($except) {
            $body['except'] = array_values($except);
        }

        return $this->post('/rooms/'.rawurlencode($room).'/broadcast', $body);
    }

    /** POST /apps/{app}/users/{user}/send */
    public function toUser(string $userId, $data): array
    {
        return $this->post('/users/'.rawurlencode($userId).'/send', ['data' => $data]);
    }

    /**
     * A signed POST to /apps/{app_id}{$path}; the decoded JSON answer.
     *
     * @throws ResonanceApiException
     */
    public function post(string $path, array $body): array
    {
        $fullPath = '/apps/'.rawurlencode($this->appId).$path;
        $json = json_encode($body, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE);
        if ($json === false) {
            throw new ResonanceApiException('the body cannot be encoded as JSON: '.json_last_error_msg());
        }
        $url = $this->baseUrl.$fullPath.'?'.Signature::apiQuery($this->key, $this->secret, 'POST', $fullPath, $json);
        $context = stream_context_create(['http' => [
            'method' => 'POST',
            'header' => "Content-Type: application/json\r\nAccept: application/json\r\n",
            'content' => $json,
            'timeout' => $this->timeout,
            'ignore_errors' => true,
            'follow_location' => 0,
        ]]);
        $answer = @file_get_contents($url, false, $context);
        if ($answer === false) {
            $error = error_get_last();
            throw new ResonanceApiException('Resonance is unreachable at '.$this->baseUrl.': '.($error['message'] ?? 'connection failed'));
        }
        $status = 0;
        $headers = function_exists('http_get_last_response_headers') ? http_get_last_response_headers() : ($http_response_header ?? []);
        foreach ((array) $headers as $line) {
            if (preg_match('#^HTTP/\S+\s+(\d{3})#', $line, $m)) {
                $status = (int) $m[1];
            }
        }
        $decoded = json_decode($answer, true);
        if ($status < 200 || $status > 299) {
            $reason = is_array($decoded) && isset($decoded['error']) ? $decoded['error'] : substr($answer, 0, 200);
            throw new ResonanceApiException("Resonance answered $status to POST $fullPath: $reason", $status);
        }

        return is_array($decoded) ? $decoded : [];
    }
}
