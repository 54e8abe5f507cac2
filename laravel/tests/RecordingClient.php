<?php

namespace Resonance\Laravel\Tests;

use Resonance\Laravel\Support\ApiClient;

/** Records the API calls instead of making them (the HTTP side is tested end to end). */
class RecordingClient extends ApiClient
{
    public $calls = [];

    public function __construct()
    {
        parent::__construct('http://unused', '1', 'k', 's');
    }

    public function post(string $path, array $body): array
    {
        $this->calls[] = [$path, $body];

        return [];
    }
}
