<?php

namespace App\Http\Middleware;

use Illuminate\Foundation\Http\Middleware\VerifyCsrfToken as Middleware;

/**
 * CSRF protection of every POST in the "web" group. (Laravel 8.83's
 * Broadcast::routes() takes /broadcasting/auth out of it itself, so
 * Resonance's server-side auth calls need no CSRF header.)
 */
class VerifyCsrfToken extends Middleware
{
    protected $except = [];
}
