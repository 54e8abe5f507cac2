<?php

return [
    'defaults' => ['guard' => 'web', 'passwords' => 'users'],
    'guards' => [
        'web' => ['driver' => 'session', 'provider' => 'users'],
    ],
    // The users come from App\Auth\FixtureUserProvider (a fixed list, no
    // database), registered in App\Providers\AuthServiceProvider.
    'providers' => [
        'users' => ['driver' => 'fixture', 'model' => App\Models\User::class],
    ],
    'password_timeout' => 10800,
];
