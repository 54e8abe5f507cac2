<?php

return [

    /*
    |--------------------------------------------------------------------------
    | The Resonance app
    |--------------------------------------------------------------------------
    |
    | The same id, key and secret as the app in Resonance's configuration
    | (RESONANCE_APP_ID / _KEY / _SECRET there too). The secret signs the
    | calls Resonance makes to this app (X-Resonance-Signature, webhooks)
    | and the calls this app makes to Resonance's HTTP API.
    |
    */

    'app_id' => env('RESONANCE_APP_ID'),
    'key' => env('RESONANCE_APP_KEY'),
    'secret' => env('RESONANCE_APP_SECRET'),

    /*
    | Where this app reaches Resonance's HTTP API (Socket::broadcast() and
    | friends outside a handler call).
    */
    'api_url' => env('RESONANCE_API_URL', 'http://127.0.0.1:'.env('RESONANCE_PORT', 6001)),
    'api_timeout' => (float) env('RESONANCE_API_TIMEOUT', 5),

    /*
    |--------------------------------------------------------------------------
    | Sockets: routes/sockets.php
    |--------------------------------------------------------------------------
    |
    | `url` is how Resonance reaches this app; `php artisan resonance:routes`
    | prints the [[routes]] entries with handler = url + path. The guard
    | resolves $conn->user() from the cookies (or Authorization header) the
    | browser sent on the WebSocket handshake; null means the default guard.
    |
    */

    'sockets' => [
        'routes' => base_path('routes/sockets.php'),
        'url' => env('RESONANCE_HANDLER_URL', env('APP_URL', 'http://127.0.0.1:8000')),
        'path' => 'resonance/socket',
        'guard' => env('RESONANCE_GUARD'),
        'timeout' => 5,
    ],

    /*
    |--------------------------------------------------------------------------
    | Webhooks
    |--------------------------------------------------------------------------
    |
    | Pusher-format webhooks from Resonance (X-Pusher-Key, X-Pusher-Signature)
    | become Laravel events: ChannelOccupied, ChannelVacated, MemberAdded,
    | MemberRemoved, ClientEventReceived, CacheMiss, SubscriptionCount. Point
    | the app's `webhooks` URL in Resonance at url + path. null turns it off.
    |
    */

    'webhooks' => [
        'path' => 'resonance/webhooks',
        'max_age' => 300,
    ],
];
