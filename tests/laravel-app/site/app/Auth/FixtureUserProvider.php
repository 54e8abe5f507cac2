<?php

namespace App\Auth;

use App\Models\User;
use Illuminate\Contracts\Auth\Authenticatable;
use Illuminate\Contracts\Auth\UserProvider;
use Illuminate\Contracts\Hashing\Hasher;

/** Laravel's UserProvider contract over App\Models\User::USERS. */
class FixtureUserProvider implements UserProvider
{
    private $hasher;

    public function __construct(Hasher $hasher)
    {
        $this->hasher = $hasher;
    }

    public function retrieveById($identifier)
    {
        return User::find($identifier);
    }

    public function retrieveByToken($identifier, $token)
    {
        return null;
    }

    public function updateRememberToken(Authenticatable $user, $token)
    {
    }

    public function retrieveByCredentials(array $credentials)
    {
        return isset($credentials['email']) ? User::findByEmail((string) $credentials['email']) : null;
    }

    public function validateCredentials(Authenticatable $user, array $credentials)
    {
        return $this->hasher->check((string) ($credentials['password'] ?? ''), $user->getAuthPassword());
    }
}
