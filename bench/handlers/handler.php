<?php
// The benchmark's PHP handler (php -S): the same echo through the app.
$body = file_get_contents('php://input');
if (!hash_equals(hash_hmac('sha256', $body, getenv('RESONANCE_SECRET')), $_SERVER['HTTP_X_RESONANCE_SIGNATURE'] ?? '')) {
    http_response_code(401);
    return;
}
$event = json_decode($body, true);
header('Content-Type: application/json');
echo $event['event'] === 'message' ? json_encode(['actions' => [['send' => $event['data']]]]) : '{}';
